//! Conversions of the guest services' messages: `CopyFile`, `SetGuestDateTime`,
//! `ReseedRandomDev`, `GetMetrics`.

use hull_protocols::agent::{CopyFileRequest, Metrics, SetGuestDateTimeRequest};

use crate::fs::copy::CopyRequest;
use crate::guest_clock::{ClockError, WallTime};

/// A `CopyFileRequest` as the domain's request (the data is moved, not copied).
pub fn copy_request(req: CopyFileRequest) -> CopyRequest {
    CopyRequest {
        path: req.path.into(),
        file_mode: req.file_mode,
        dir_mode: req.dir_mode,
        uid: req.uid,
        gid: req.gid,
        file_size: req.file_size,
        offset: req.offset,
        data: req.data,
    }
}

/// The time a `SetGuestDateTimeRequest` asks for.
pub fn wall_time(req: &SetGuestDateTimeRequest) -> Result<WallTime, ClockError> {
    WallTime::new(req.Sec, req.Usec)
}

/// `GetMetrics`' answer.
pub fn metrics_to_proto(text: String) -> Metrics {
    Metrics {
        metrics: text,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copy_file_field_reaches_the_domain() {
        let req = CopyFileRequest {
            path: "/run/kata-containers/shared/containers/f".into(),
            file_size: 10,
            file_mode: 0o100644,
            dir_mode: 0o750,
            uid: 1,
            gid: -1,
            offset: 4,
            data: b"abc".to_vec(),
            ..Default::default()
        };
        let request = copy_request(req);
        assert_eq!(
            request,
            CopyRequest {
                path: "/run/kata-containers/shared/containers/f".into(),
                file_mode: 0o100644,
                dir_mode: 0o750,
                uid: 1,
                gid: -1,
                file_size: 10,
                offset: 4,
                data: b"abc".to_vec(),
            }
        );
    }

    #[test]
    fn the_time_is_checked() {
        let req = SetGuestDateTimeRequest {
            Sec: 5,
            Usec: 1_000_000,
            ..Default::default()
        };
        assert!(wall_time(&req).is_err());
    }
}
