//! The guest's network: UpdateInterface, UpdateRoutes, ListInterfaces, ListRoutes,
//! AddARPNeighbors, GetIPTables, SetIPTables.
//!
//! The update calls take their request, or (through `From`) just what it carries: an
//! [`Interface`], a list of [`Route`]s, a list of [`ARPNeighbor`]s.

use crate::agent::{
    ARPNeighbors, AddARPNeighborsRequest, GetIPTablesRequest, ListInterfacesRequest,
    ListRoutesRequest, Routes, SetIPTablesRequest, UpdateInterfaceRequest, UpdateRoutesRequest,
};
use crate::types::{ARPNeighbor, Interface, Route};

use super::{AgentClient, ClientError};

impl From<Interface> for UpdateInterfaceRequest {
    fn from(interface: Interface) -> Self {
        Self {
            interface: Some(interface).into(),
            ..Default::default()
        }
    }
}

impl From<Vec<Route>> for UpdateRoutesRequest {
    fn from(routes: Vec<Route>) -> Self {
        Self {
            routes: Some(Routes {
                Routes: routes,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        }
    }
}

impl From<Vec<ARPNeighbor>> for AddARPNeighborsRequest {
    fn from(neighbors: Vec<ARPNeighbor>) -> Self {
        Self {
            neighbors: Some(ARPNeighbors {
                ARPNeighbors: neighbors,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        }
    }
}

impl AgentClient {
    /// `AgentService.UpdateInterface`: configure one NIC (found by MAC, PCI path or
    /// name); answers it as configured.
    pub async fn update_interface(
        &self,
        req: impl Into<UpdateInterfaceRequest>,
    ) -> Result<Interface, ClientError> {
        let req = req.into();
        self.call_agent("AgentService.UpdateInterface", |agent, ctx| {
            agent.update_interface(ctx, &req)
        })
        .await
    }

    /// `AgentService.UpdateRoutes`: replace the guest's routes; answers them as set.
    pub async fn update_routes(
        &self,
        req: impl Into<UpdateRoutesRequest>,
    ) -> Result<Vec<Route>, ClientError> {
        let req = req.into();
        self.call_agent("AgentService.UpdateRoutes", |agent, ctx| {
            agent.update_routes(ctx, &req)
        })
        .await
        .map(|r| r.Routes)
    }

    /// `AgentService.ListInterfaces`: every link with its configured addresses.
    pub async fn list_interfaces(&self) -> Result<Vec<Interface>, ClientError> {
        let req = ListInterfacesRequest::new();
        self.call_agent("AgentService.ListInterfaces", |agent, ctx| {
            agent.list_interfaces(ctx, &req)
        })
        .await
        .map(|r| r.Interfaces)
    }

    /// `AgentService.ListRoutes`: the configured routes.
    pub async fn list_routes(&self) -> Result<Vec<Route>, ClientError> {
        let req = ListRoutesRequest::new();
        self.call_agent("AgentService.ListRoutes", |agent, ctx| {
            agent.list_routes(ctx, &req)
        })
        .await
        .map(|r| r.Routes)
    }

    /// `AgentService.AddARPNeighbors`: add or replace static ARP / NDP entries.
    pub async fn add_arp_neighbors(
        &self,
        req: impl Into<AddARPNeighborsRequest>,
    ) -> Result<(), ClientError> {
        let req = req.into();
        self.call_agent("AgentService.AddARPNeighbors", |agent, ctx| {
            agent.add_arp_neighbors(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.GetIPTables`: the `iptables-save` (or `ip6tables-save`) text.
    pub async fn get_ip_tables(&self, ipv6: bool) -> Result<Vec<u8>, ClientError> {
        let req = GetIPTablesRequest {
            is_ipv6: ipv6,
            ..Default::default()
        };
        self.call_agent("AgentService.GetIPTables", |agent, ctx| {
            agent.get_ip_tables(ctx, &req)
        })
        .await
        .map(|r| r.data)
    }

    /// `AgentService.SetIPTables`: restore `data` with `iptables-restore`; answers its
    /// output.
    pub async fn set_ip_tables(&self, ipv6: bool, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let req = SetIPTablesRequest {
            is_ipv6: ipv6,
            data: data.to_vec(),
            ..Default::default()
        };
        self.call_agent("AgentService.SetIPTables", |agent, ctx| {
            agent.set_ip_tables(ctx, &req)
        })
        .await
        .map(|r| r.data)
    }
}
