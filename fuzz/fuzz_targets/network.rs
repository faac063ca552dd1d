//! Netlink conversions: interfaces, routes and ARP neighbours as the RPC layer turns them
//! into the network layer's specs (the first byte picks which).
#![no_main]

use hull_agent::rpc::network;
use hull_protocols::types::{ARPNeighbor, Interface, Route};
use libfuzzer_sys::fuzz_target;
use protobuf::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(interface) = Interface::parse_from_bytes(rest) {
                let _ = network::interface_spec(Some(&interface));
            }
        }
        1 => {
            if let Ok(routes) = hull_protocols::agent::Routes::parse_from_bytes(rest) {
                let routes: &[Route] = &routes.Routes;
                if let Ok(specs) = network::route_specs(routes) {
                    for spec in &specs {
                        let _ = network::route_to_proto(spec);
                    }
                }
            }
        }
        _ => {
            if let Ok(neighbors) = hull_protocols::agent::ARPNeighbors::parse_from_bytes(rest) {
                let neighbors: &[ARPNeighbor] = &neighbors.ARPNeighbors;
                let _ = network::neighbor_specs(neighbors);
            }
        }
    }
});
