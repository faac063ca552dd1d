//! `CreateContainerRequest.devices` (Kata's `Device`) → the device layer's requests.

use hull_protocols::agent::Device;

use crate::device::container::DeviceRequest;

/// Each `Device` as a [`DeviceRequest`], field for field; the device layer checks them.
pub fn device_requests(devices: &[Device]) -> Vec<DeviceRequest> {
    devices
        .iter()
        .map(|d| DeviceRequest {
            id: d.id.clone(),
            driver: d.type_.clone(),
            vm_path: d.vm_path.clone(),
            container_path: d.container_path.clone(),
            options: d.options.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_carried() {
        let device = Device {
            id: "02/01".into(),
            type_: "blk".into(),
            vm_path: "/dev/vdb".into(),
            container_path: "/dev/xda".into(),
            options: vec!["o".into()],
            ..Default::default()
        };
        assert_eq!(
            device_requests(&[device]),
            vec![DeviceRequest {
                id: "02/01".into(),
                driver: "blk".into(),
                vm_path: "/dev/vdb".into(),
                container_path: "/dev/xda".into(),
                options: vec!["o".into()],
            }]
        );
    }
}
