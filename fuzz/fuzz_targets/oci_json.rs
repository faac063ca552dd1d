//! OCI JSON ⇄ protobuf: a config.json to the protobuf spec and back, and a protobuf spec
//! (as CreateContainer carries it) to the OCI spec and back.
#![no_main]

use hull_protocols::oci;
use hull_protocols::oci_json;
use libfuzzer_sys::fuzz_target;
use protobuf::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        if let Ok(spec) = oci_json::spec_from_config_json(rest)
            && let Ok(proto) = oci_json::spec_to_proto(&spec)
        {
            let _ = oci_json::spec_from_proto(&proto);
        }
    } else if let Ok(proto) = oci::Spec::parse_from_bytes(rest) {
        if let Ok(spec) = oci_json::spec_from_proto(&proto) {
            let _ = oci_json::spec_to_proto(&spec);
        }
        if let Some(process) = proto.Process.as_ref()
            && let Ok(p) = oci_json::process_from_proto(process)
        {
            let _ = oci_json::process_to_proto(&p);
        }
        if let Some(resources) = proto.Linux.as_ref().and_then(|l| l.Resources.as_ref())
            && let Ok(r) = oci_json::resources_from_proto(resources)
        {
            let _ = oci_json::resources_to_proto(&r);
        }
        let _ = hull_agent::rpc::oci::spec_from_proto(&proto);
    }
});
