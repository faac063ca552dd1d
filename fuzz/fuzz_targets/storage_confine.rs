//! Storage specs and path confinement: a `Storage` message through the RPC conversion and
//! the storage layer's checks, and a requested path through the confinement rules
//! (lexically, then resolved inside a temporary root holding a directory, a file and
//! symlinks that point inside and outside). Nothing is created or mounted.
#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use hull_agent::fs::confine::{self, ConfinedRoot, Scope};
use hull_agent::rpc::storage;
use hull_agent::storage::{StorageRegistry, StorageSpec};
use hull_protocols::agent::Storage;
use libfuzzer_sys::fuzz_target;
use protobuf::Message;

struct Roots {
    _dir: tempfile::TempDir,
    beneath: ConfinedRoot,
    in_root: ConfinedRoot,
}

fn roots() -> &'static Roots {
    static ROOTS: OnceLock<Roots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let made = (|| -> std::io::Result<Roots> {
            let dir = tempfile::tempdir()?;
            let root = dir.path().canonicalize()?.join("root");
            std::fs::create_dir_all(root.join("dir/sub"))?;
            std::fs::write(root.join("dir/file"), b"x")?;
            std::os::unix::fs::symlink("sub", root.join("dir/inside"))?;
            std::os::unix::fs::symlink("../..", root.join("dir/up"))?;
            std::os::unix::fs::symlink("/etc", root.join("abs"))?;
            std::os::unix::fs::symlink("loop", root.join("loop"))?;
            let open = |scope| {
                ConfinedRoot::open(&root, scope).map_err(|e| std::io::Error::other(e.to_string()))
            };
            Ok(Roots {
                beneath: open(Scope::Beneath)?,
                in_root: open(Scope::InRoot)?,
                _dir: dir,
            })
        })();
        match made {
            Ok(roots) => roots,
            Err(e) => panic!("cannot set up the confinement roots: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let registry = StorageRegistry::new();
            if let Ok(message) = Storage::parse_from_bytes(rest)
                && let Ok(request) = storage::storage_request(&message)
                && let Ok(spec) =
                    StorageSpec::check(&request, &registry, Path::new(hull_fuzz::RUN_DIR))
            {
                let _ = spec.mount_options();
                let _ = spec.fs_gid_option();
            }
        }
        pick => {
            let requested = Path::new(OsStr::from_bytes(rest));
            let roots = roots();
            let root = if pick == 1 {
                &roots.beneath
            } else {
                &roots.in_root
            };
            let _ = confine::relative_to(root.path(), root.scope(), requested);
            let _ = root.relative(requested);
            let _ = root.relative_beneath(requested);
            if let Ok(resolved) = root.resolve(requested) {
                // Whatever resolved must lie inside the root.
                let real = std::fs::read_link(resolved.proc_path());
                if let Ok(real) = real {
                    assert!(
                        real.starts_with(root.path()),
                        "{} resolved to {} outside {}",
                        requested.display(),
                        real.display(),
                        root.path().display()
                    );
                }
            }
        }
    }
});
