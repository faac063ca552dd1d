//! Storages and files beside the sandbox's own: UpdateEphemeralMounts,
//! RemoveStaleVirtiofsShareMounts, GetVolumeStats, ResizeVolume, CopyFile.

use crate::agent::{
    CopyFileRequest, RemoveStaleVirtiofsShareMountsRequest, ResizeVolumeRequest, Storage,
    UpdateEphemeralMountsRequest, VolumeStatsRequest,
};
use crate::csi::VolumeStatsResponse;

use super::{AgentClient, ClientError};

impl AgentClient {
    /// `AgentService.UpdateEphemeralMounts` with these `storages`.
    pub async fn update_ephemeral_mounts(&self, storages: Vec<Storage>) -> Result<(), ClientError> {
        let req = UpdateEphemeralMountsRequest {
            storages,
            ..Default::default()
        };
        self.call_agent("AgentService.UpdateEphemeralMounts", |agent, ctx| {
            agent.update_ephemeral_mounts(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.RemoveStaleVirtiofsShareMounts`.
    pub async fn remove_stale_virtiofs_share_mounts(&self) -> Result<(), ClientError> {
        let req = RemoveStaleVirtiofsShareMountsRequest::new();
        self.call_agent(
            "AgentService.RemoveStaleVirtiofsShareMounts",
            |agent, ctx| agent.remove_stale_virtiofs_share_mounts(ctx, &req),
        )
        .await
        .map(drop)
    }

    /// `AgentService.GetVolumeStats` of the volume mounted at `volume_guest_path`.
    pub async fn get_volume_stats(
        &self,
        volume_guest_path: &str,
    ) -> Result<VolumeStatsResponse, ClientError> {
        let req = VolumeStatsRequest {
            volume_guest_path: volume_guest_path.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.GetVolumeStats", |agent, ctx| {
            agent.get_volume_stats(ctx, &req)
        })
        .await
    }

    /// `AgentService.ResizeVolume`: grow the volume at `volume_guest_path` to `size` bytes.
    pub async fn resize_volume(
        &self,
        volume_guest_path: &str,
        size: u64,
    ) -> Result<(), ClientError> {
        let req = ResizeVolumeRequest {
            volume_guest_path: volume_guest_path.to_owned(),
            size,
            ..Default::default()
        };
        self.call_agent("AgentService.ResizeVolume", |agent, ctx| {
            agent.resize_volume(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.CopyFile`: one chunk of a file copied into the guest.
    pub async fn copy_file(&self, req: &CopyFileRequest) -> Result<(), ClientError> {
        self.call_agent("AgentService.CopyFile", |agent, ctx| {
            agent.copy_file(ctx, req)
        })
        .await
        .map(drop)
    }
}

/// The most `data` one `CopyFile` request carries: the chunk of Kata's Go runtime (1 MiB).
pub const COPY_CHUNK: usize = 1 << 20;

/// `dir_mode` of the requests [`copy_file_requests`] makes: parents the guest creates on
/// the way get these permission bits (Kata's runtime sends `0750`).
pub const COPY_DIR_MODE: u32 = 0o750;

/// The `CopyFile` requests that put the host's `local` at `guest_path`, as Kata's Go
/// runtime makes them: `local` is not followed (a symlink is copied as a symlink, its
/// target in `data`), a directory is one request (its contents are not included), a
/// regular file is read whole and sent in chunks of [`COPY_CHUNK`] (one request when it
/// is empty). Mode, owner and size come from `lstat`. Other kinds of file are refused.
pub fn copy_file_requests(
    local: &std::path::Path,
    guest_path: &str,
) -> std::io::Result<Vec<CopyFileRequest>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;

    let meta = std::fs::symlink_metadata(local)?;
    let base = CopyFileRequest {
        path: guest_path.to_owned(),
        file_mode: meta.mode(),
        dir_mode: COPY_DIR_MODE,
        // Ids above i32::MAX do not fit the protocol: -1 leaves the guest's as it is.
        uid: i32::try_from(meta.uid()).unwrap_or(-1),
        gid: i32::try_from(meta.gid()).unwrap_or(-1),
        ..Default::default()
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        return Ok(vec![base]);
    }
    if kind.is_symlink() {
        let target = std::fs::read_link(local)?;
        return Ok(vec![CopyFileRequest {
            data: target.as_os_str().as_bytes().to_vec(),
            ..base
        }]);
    }
    if !kind.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{}: only regular files, directories and symlinks can be copied",
                local.display()
            ),
        ));
    }
    let data = std::fs::read(local)?;
    let file_size = i64::try_from(data.len()).map_err(std::io::Error::other)?;
    if data.is_empty() {
        return Ok(vec![CopyFileRequest { file_size, ..base }]);
    }
    Ok(data
        .chunks(COPY_CHUNK)
        .enumerate()
        .map(|(i, chunk)| CopyFileRequest {
            file_size,
            offset: (i * COPY_CHUNK) as i64,
            data: chunk.to_vec(),
            ..base.clone()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_file_goes_in_chunks_a_directory_and_a_symlink_in_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        let content: Vec<u8> = (0..COPY_CHUNK * 2 + 10).map(|i| i as u8).collect();
        std::fs::write(&file, &content).unwrap();
        let requests = copy_file_requests(&file, "/g/f").unwrap();
        assert_eq!(requests.len(), 3);
        let offsets: Vec<i64> = requests.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, COPY_CHUNK as i64, 2 * COPY_CHUNK as i64]);
        assert!(requests.iter().all(|r| r.file_size == content.len() as i64));
        let joined: Vec<u8> = requests.iter().flat_map(|r| r.data.clone()).collect();
        assert_eq!(joined, content);
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(requests[0].file_mode, meta.mode());
        assert_eq!(requests[0].uid as u32, meta.uid());
        assert_eq!(requests[0].dir_mode, COPY_DIR_MODE);
        assert_eq!(requests[0].path, "/g/f");

        std::fs::write(dir.path().join("empty"), b"").unwrap();
        let empty = copy_file_requests(&dir.path().join("empty"), "/g/e").unwrap();
        assert_eq!(empty.len(), 1);
        assert_eq!((empty[0].file_size, empty[0].data.len()), (0, 0));

        let sub = copy_file_requests(dir.path(), "/g").unwrap();
        assert_eq!(sub.len(), 1);
        assert_eq!(sub[0].file_mode & 0o170000, 0o040000);

        std::os::unix::fs::symlink("../target", dir.path().join("l")).unwrap();
        let link = copy_file_requests(&dir.path().join("l"), "/g/l").unwrap();
        assert_eq!(link.len(), 1);
        assert_eq!(link[0].data, b"../target");
        assert_eq!(link[0].file_mode & 0o170000, 0o120000);
    }

    #[test]
    fn other_files_are_refused() {
        let err = copy_file_requests(std::path::Path::new("/dev/null"), "/g/n").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("/dev/null"));
        assert!(copy_file_requests(std::path::Path::new("/nonexistent/x"), "/g/x").is_err());
    }
}
