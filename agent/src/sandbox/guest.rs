//! Facts about the guest the runtime asks for in `GetGuestDetails`, read from sysfs.

use std::path::Path;

use super::SandboxError;

/// Where the kernel publishes memory-hotplug facts, relative to the sysfs root.
const MEMORY_DIR: &str = "devices/system/memory";

/// What `GetGuestDetails` reports about the guest itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestFacts {
    /// The memory hotplug block size; 0 when the kernel has no memory hotplug.
    pub mem_block_size_bytes: u64,
    /// Whether memory can be added through `/sys/devices/system/memory/probe`.
    pub mem_hotplug_probe: bool,
}

/// Reads the facts from a sysfs tree (`/sys` in a guest, a fake tree in tests).
pub fn read_guest_facts(sysfs: &Path) -> Result<GuestFacts, SandboxError> {
    let memory = sysfs.join(MEMORY_DIR);
    let block_size_path = memory.join("block_size_bytes");
    let mem_block_size_bytes = match std::fs::read_to_string(&block_size_path) {
        Ok(text) => parse_hex(text.trim()).ok_or_else(|| SandboxError::BadSysfsValue {
            path: block_size_path.clone(),
            found: text.trim().to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(SandboxError::io(block_size_path, e)),
    };
    Ok(GuestFacts {
        mem_block_size_bytes,
        mem_hotplug_probe: memory.join("probe").exists(),
    })
}

fn parse_hex(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysfs_with(block_size: Option<&str>, probe: bool) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let memory = root.path().join(MEMORY_DIR);
        std::fs::create_dir_all(&memory).unwrap();
        if let Some(size) = block_size {
            std::fs::write(memory.join("block_size_bytes"), size).unwrap();
        }
        if probe {
            std::fs::write(memory.join("probe"), "").unwrap();
        }
        root
    }

    #[test]
    fn reads_the_block_size_in_hex() {
        let root = sysfs_with(Some("8000000\n"), false);
        let facts = read_guest_facts(root.path()).unwrap();
        assert_eq!(facts.mem_block_size_bytes, 128 << 20);
        assert!(!facts.mem_hotplug_probe);
    }

    #[test]
    fn probe_file_means_hotplug_by_probe() {
        let root = sysfs_with(Some("0x8000000"), true);
        let facts = read_guest_facts(root.path()).unwrap();
        assert_eq!(facts.mem_block_size_bytes, 128 << 20);
        assert!(facts.mem_hotplug_probe);
    }

    #[test]
    fn no_memory_hotplug_is_zero() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            read_guest_facts(root.path()).unwrap(),
            GuestFacts::default()
        );
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let root = sysfs_with(Some("lots"), false);
        let err = read_guest_facts(root.path()).unwrap_err();
        assert!(err.to_string().contains("block_size_bytes"), "{err}");
    }
}
