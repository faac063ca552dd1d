//! Kata's `Storage` message → [`StorageRequest`]; the storage layer checks it.

use hull_protocols::agent::Storage;
use hull_protocols::types::FSGroupChangePolicy;

use crate::storage::{FsGroup, FsGroupPolicy, StorageError, StorageRequest, StorageSpec, Storages};

/// A `Storage` message as a request. Only an `fs_group` change policy this agent does
/// not know fails here; everything else is checked by [`Storages::parse`].
pub fn storage_request(storage: &Storage) -> Result<StorageRequest, StorageError> {
    let fs_group = match storage.fs_group.as_ref() {
        None => None,
        Some(group) => Some(FsGroup {
            gid: group.group_id,
            policy: match group.group_change_policy.enum_value() {
                Ok(FSGroupChangePolicy::Always) => FsGroupPolicy::Always,
                Ok(FSGroupChangePolicy::OnRootMismatch) => FsGroupPolicy::OnRootMismatch,
                Err(value) => {
                    return Err(StorageError::Invalid {
                        mount_point: storage.mount_point.clone(),
                        driver: storage.driver.clone(),
                        reason: format!("unknown fs_group change policy {value}"),
                    });
                }
            },
        }),
    };
    Ok(StorageRequest {
        driver: storage.driver.clone(),
        driver_options: storage.driver_options.clone(),
        source: storage.source.clone(),
        fstype: storage.fstype.clone(),
        options: storage.options.clone(),
        mount_point: storage.mount_point.clone(),
        fs_group,
        shared: storage.shared,
    })
}

/// Every `Storage` message of a request as requests.
pub fn storage_requests(storages: &[Storage]) -> Result<Vec<StorageRequest>, StorageError> {
    storages.iter().map(storage_request).collect()
}

/// A `Storage` message, converted and checked by `storages`.
pub fn parse_storage(storages: &Storages, storage: &Storage) -> Result<StorageSpec, StorageError> {
    storages.parse(&storage_request(storage)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_protocols::agent::FSGroup;
    use protobuf::EnumOrUnknown;

    #[test]
    fn every_field_is_carried_over() {
        let storage = Storage {
            driver: "ephemeral".into(),
            driver_options: vec!["d".into()],
            source: "tmpfs".into(),
            fstype: "tmpfs".into(),
            options: vec!["size=64m".into()],
            mount_point: "/run/kata-containers/sandbox/ephemeral/v".into(),
            fs_group: Some(FSGroup {
                group_id: 2000,
                group_change_policy: FSGroupChangePolicy::OnRootMismatch.into(),
                ..Default::default()
            })
            .into(),
            shared: true,
            ..Default::default()
        };
        assert_eq!(
            storage_request(&storage).unwrap(),
            StorageRequest {
                driver: "ephemeral".into(),
                driver_options: vec!["d".into()],
                source: "tmpfs".into(),
                fstype: "tmpfs".into(),
                options: vec!["size=64m".into()],
                mount_point: "/run/kata-containers/sandbox/ephemeral/v".into(),
                fs_group: Some(FsGroup {
                    gid: 2000,
                    policy: FsGroupPolicy::OnRootMismatch,
                }),
                shared: true,
            }
        );
    }

    #[test]
    fn an_unknown_fs_group_policy_is_invalid() {
        let storage = Storage {
            driver: "local".into(),
            mount_point: "/run/kata-containers/x".into(),
            fs_group: Some(FSGroup {
                group_id: 1,
                group_change_policy: EnumOrUnknown::from_i32(7),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let err = storage_request(&storage).unwrap_err();
        assert!(matches!(err, StorageError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("policy 7"), "{err}");
    }
}
