//! Block storages: a file system on a disk the host plugged in, mounted once the disk
//! is there ([`crate::device`] waits for it).
//!
//! | driver | source | device |
//! |---|---|---|
//! | `blk` | a PCI path (`02/01`), or `/dev/NAME` | virtio-blk on PCI |
//! | `mmioblk` | `/dev/NAME` | virtio-blk on virtio-mmio (named by the host) |
//! | `scsi` | `TARGET:LUN` | a disk on virtio-scsi |
//! | `nvdimm` | `/dev/pmemN` | an NVDIMM or virtio-pmem region; `dax` in the options maps it directly |

use std::path::Path;

use async_trait::async_trait;

use super::{MountedStorage, StorageContext, StorageError, StorageHandler, StorageSpec};
use crate::device::{BlockDriver, BlockQuery, DeviceError};
use crate::mount::MountOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Blk,
    MmioBlk,
    Scsi,
    Nvdimm,
}

impl Block {
    fn query(self, source: &str) -> Result<BlockQuery, DeviceError> {
        self.device_driver().query(source)
    }

    fn device_driver(self) -> BlockDriver {
        match self {
            Self::Blk => BlockDriver::Blk,
            Self::MmioBlk => BlockDriver::MmioBlk,
            Self::Scsi => BlockDriver::Scsi,
            Self::Nvdimm => BlockDriver::Nvdimm,
        }
    }
}

#[async_trait]
impl StorageHandler for Block {
    fn driver(&self) -> &'static str {
        self.device_driver().name()
    }

    fn validate(&self, spec: &StorageSpec, _run_dir: &Path) -> Result<(), String> {
        self.query(&spec.source).map_err(|e| e.to_string())?;
        if spec.fstype.is_empty() {
            return Err("fstype is required (the file system on the device)".into());
        }
        MountOptions::parse(&spec.mount_options()).map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn mount(
        &self,
        spec: &StorageSpec,
        ctx: &StorageContext<'_>,
    ) -> Result<MountedStorage, StorageError> {
        let device_error = |source| StorageError::Device {
            mount_point: spec.mount_point.clone(),
            source,
        };
        let query = self.query(&spec.source).map_err(device_error)?;
        let options = MountOptions::parse(&spec.mount_options())?;
        let device = ctx
            .devices
            .block_device(&query)
            .await
            .map_err(device_error)?;
        tracing::debug!(driver = self.driver(), source = %spec.source, device = %device.display(), "device ready");
        super::mount_storage(
            spec,
            ctx,
            device.display().to_string(),
            spec.fstype.clone(),
            options,
            Some(device),
        )
        .await
    }
}
