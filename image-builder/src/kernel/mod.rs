//! `hull-image kernel`: the guest kernel from Debian's `linux-source-6.1`, configured with
//! allnoconfig plus the fragments of `kernel-config/`, checked, built and cached.

pub mod build;
pub mod check;
mod error;
pub mod fragment;
pub mod key;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use self::error::KernelError;
use self::error::Result;
use crate::arch::Arch;
use crate::cache::Cache;
use crate::fsutil::{self, IoError, io_err};
use crate::progress::{CompileCounter, Progress, fmt_duration, fmt_size};

/// Debian's kernel source tarball (`apt-get install linux-source-6.1`).
pub const DEFAULT_SOURCE: &str = "/usr/src/linux-source-6.1.tar.xz";

/// Objects (CC/AS/LD/AR lines) a build of the repository's fragments compiles, measured;
/// used as the progress estimate until a build on this machine records its own count.
pub const DEFAULT_OBJECT_ESTIMATE: u64 = 1811;

/// How often the compile phase prints a progress line.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Artifact file names, in the cache entry and in the output directory: the compressed
/// boot image.
pub const BZIMAGE: &str = "bzImage";
/// Artifact file name: the uncompressed ELF kernel (for VMMs that boot it directly, and
/// for symbols).
pub const VMLINUX: &str = "vmlinux";
/// Artifact file name: the kernel's final `.config`.
pub const CONFIG: &str = "config";
/// Metadata of a cache entry.
pub const BUILD_RECORD: &str = "build.json";
/// The manifest `install` writes into the output directory.
pub const MANIFEST: &str = "manifest.json";
const ARTIFACTS: [&str; 3] = [BZIMAGE, VMLINUX, CONFIG];

/// What to build.
#[derive(Debug, Clone)]
pub struct KernelRequest {
    /// The source tarball.
    pub source: PathBuf,
    /// The folder of config fragments.
    pub config_dir: PathBuf,
    /// The guest architecture (`--arch`).
    pub arch: Arch,
    /// Adds `debug.conf.opt`.
    pub debug: bool,
    /// `make -j` value.
    pub jobs: usize,
    /// Rebuild even when the cache has the kernel (the new build replaces the entry), and
    /// re-hash the source.
    pub no_cache: bool,
    /// Keep the work directory (the extracted, built tree) after a successful build.
    pub keep_build_dir: bool,
}

/// Inputs and results of one build, stored as `build.json` in its cache entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    /// [`key::RECIPE_VERSION`] of the build.
    pub recipe_version: u32,
    /// The cache key (hex SHA-256, see [`key`]), also the entry's directory name.
    pub key: String,
    /// The guest architecture's name.
    pub arch: String,
    /// Whether the debug fragment was included.
    pub debug: bool,
    /// The source tarball, as given.
    pub source_path: PathBuf,
    /// SHA-256 (hex) of the source tarball.
    pub source_sha256: String,
    /// Fragment labels in application order.
    pub fragments: Vec<String>,
    /// Number of distinct options the fragments request.
    pub options_requested: usize,
    /// `include/config/kernel.release` of the built tree.
    pub kernel_release: String,
    /// `make -j` value of the compile.
    pub jobs: usize,
    /// Objects compiled (CC/AS/LD/AR lines).
    pub objects: u64,
    /// Seconds spent unpacking the source tarball.
    pub seconds_extract: f64,
    /// Seconds spent in `make allnoconfig` with the fragments.
    pub seconds_configure: f64,
    /// Seconds spent in `make bzImage` (the check between is not counted).
    pub seconds_compile: f64,
    /// Size of the built `bzImage`, in bytes.
    pub bzimage_bytes: u64,
    /// Size of the built `vmlinux`, in bytes.
    pub vmlinux_bytes: u64,
    /// When the build finished, in seconds since the Unix epoch.
    pub built_at_unix: u64,
}

/// A kernel in the cache.
#[derive(Debug, Clone)]
pub struct CachedKernel {
    /// The cache key (hex SHA-256, see [`key`]).
    pub key: String,
    /// The cache entry's directory, holding the artifacts.
    pub entry: PathBuf,
    /// Whether it was already in the cache (no build ran).
    pub hit: bool,
    /// The entry's `build.json`; `None` when a cached entry's record is unreadable.
    pub record: Option<BuildRecord>,
}

impl CachedKernel {
    /// Path of the artifact `name` ([`BZIMAGE`], [`VMLINUX`], [`CONFIG`]...) in the entry.
    pub fn artifact(&self, name: &str) -> PathBuf {
        self.entry.join(name)
    }
}

/// A cache entry is usable when every artifact and the record are there (entries are
/// renamed into place whole, so this only fails for entries damaged by hand).
fn entry_is_complete(entry: &Path) -> bool {
    ARTIFACTS
        .iter()
        .chain(std::iter::once(&BUILD_RECORD))
        .all(|name| entry.join(name).is_file())
}

fn read_record(entry: &Path) -> Option<BuildRecord> {
    let text = fs::read_to_string(entry.join(BUILD_RECORD)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Makes sure the requested kernel is in the cache, building it if needed.
pub fn ensure_built(
    req: &KernelRequest,
    cache: &Cache,
    progress: &Progress,
) -> Result<CachedKernel> {
    if !req.source.is_file() {
        return Err(KernelError::KernelSourceMissing {
            path: req.source.clone(),
        });
    }
    let fragments = fragment::load(&req.config_dir, req.arch, req.debug)?;
    tracing::debug!(
        "{} fragments, {} options",
        fragments.fragments.len(),
        fragments.requirements.len()
    );

    let phase = progress.phase("hashing", req.source.display().to_string());
    let (source_sha256, memo) = cache.source_sha256(&req.source, req.no_cache)?;
    phase.done(if memo {
        "remembered from an earlier run"
    } else {
        ""
    });

    let key = key::cache_key(&key::KeyInputs::new(
        &source_sha256,
        &fragments.merged,
        req.arch,
        req.debug,
    ));
    let entry = cache.kernel_entry(&key);
    if !req.no_cache && entry_is_complete(&entry) {
        progress.line(format!("==> cache hit: {}", entry.display()));
        return Ok(CachedKernel {
            record: read_record(&entry),
            key,
            entry,
            hit: true,
        });
    }

    for stale in cache.remove_stale_work_dirs() {
        progress.line(format!(
            "==> removed the work dir of an interrupted build: {}",
            stale.display()
        ));
    }
    let work = cache.kernel_work_dir(&key);
    if work.exists() {
        fs::remove_dir_all(&work).map_err(io_err("remove", &work))?;
    }
    let src_dir = work.join("src");
    fs::create_dir_all(&src_dir).map_err(io_err("create directory", &src_dir))?;
    if req.keep_build_dir {
        let keep = work.join(".keep");
        fs::write(&keep, "").map_err(io_err("write", &keep))?;
    }
    let log = work.join("build.log");
    let allconfig = work.join("fragments.conf");
    fs::write(&allconfig, &fragments.merged).map_err(io_err("write", &allconfig))?;
    progress.line(format!(
        "==> building kernel {} in {} (log: {})",
        &key[..16],
        work.display(),
        log.display()
    ));

    let result = build_in(
        req,
        cache,
        progress,
        &fragments,
        &key,
        &source_sha256,
        &work,
        &src_dir,
        &log,
        &allconfig,
    );
    match result {
        Ok(record) => {
            if !req.keep_build_dir {
                let phase = progress.phase("cleaning", work.display().to_string());
                if let Err(e) = fs::remove_dir_all(&work) {
                    tracing::warn!("cannot remove {}: {e}", work.display());
                }
                phase.done("");
            } else {
                progress.line(format!("==> build tree kept at {}", work.display()));
            }
            Ok(CachedKernel {
                key,
                entry,
                hit: false,
                record: Some(record),
            })
        }
        Err(e) => {
            progress.line(format!(
                "==> build failed; work dir left at {} for inspection ({})",
                work.display(),
                if req.keep_build_dir {
                    "kept"
                } else {
                    "the next build removes it"
                }
            ));
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_in(
    req: &KernelRequest,
    cache: &Cache,
    progress: &Progress,
    fragments: &fragment::FragmentSet,
    key: &str,
    source_sha256: &str,
    work: &Path,
    src_dir: &Path,
    log: &Path,
    allconfig: &Path,
) -> Result<BuildRecord> {
    let phase = progress.phase("extracting", req.source.display().to_string());
    let started = std::time::Instant::now();
    let tree = build::extract(&req.source, src_dir, log, PROGRESS_INTERVAL, || {
        progress.line(format!(
            "    extracting: {} elapsed",
            fmt_duration(started.elapsed())
        ))
    })?;
    let seconds_extract = phase.done("").as_secs_f64();

    let phase = progress.phase(
        "configuring",
        format!(
            "allnoconfig + {} fragments ({} options)",
            fragments.fragments.len(),
            fragments.requirements.len()
        ),
    );
    build::configure(&tree, req.arch, allconfig, log)?;
    let seconds_configure = phase.done("").as_secs_f64();

    let phase = progress.phase("checking", "every requested option landed in .config");
    let dotconfig_path = tree.join(".config");
    let dotconfig = fs::read_to_string(&dotconfig_path).map_err(io_err("read", &dotconfig_path))?;
    if let Err(mut not_landed) = check::check(&fragments.requirements, &dotconfig) {
        if not_landed.has_absent() {
            not_landed.annotate_absent(&check::kconfig_symbols(&tree));
        }
        return Err(not_landed.into());
    }
    phase.done(format!("{} options landed", fragments.requirements.len()));

    let estimate = cache
        .kernel_object_count()
        .unwrap_or(DEFAULT_OBJECT_ESTIMATE);
    let phase = progress.phase(
        "compiling",
        format!("make -j{} {}", req.jobs, req.arch.image_target()),
    );
    let counter = std::cell::RefCell::new(CompileCounter::new(estimate));
    let compile_start = std::time::Instant::now();
    build::compile(
        &tree,
        req.arch,
        req.jobs,
        log,
        PROGRESS_INTERVAL,
        |line| {
            counter.borrow_mut().observe(line);
        },
        || {
            progress.line(counter.borrow().progress_line(compile_start.elapsed()));
        },
    )?;
    let objects = counter.borrow().done;
    let seconds_compile = phase.done(format!("{objects} objects")).as_secs_f64();

    let phase = progress.phase("collecting", "artifacts into the cache");
    let stage = work.join("entry");
    fs::create_dir_all(&stage).map_err(io_err("create directory", &stage))?;
    let sources = [
        (tree.join(req.arch.image_path()), BZIMAGE),
        (tree.join("vmlinux"), VMLINUX),
        (dotconfig_path, CONFIG),
        (allconfig.to_path_buf(), "fragments.conf"),
        (log.to_path_buf(), "build.log"),
    ];
    for (src, name) in &sources {
        if !src.is_file() {
            return Err(KernelError::BuildOutputMissing { path: src.clone() });
        }
        fs::copy(src, stage.join(name)).map_err(io_err("copy", src))?;
    }
    let release_path = tree.join("include/config/kernel.release");
    let kernel_release = fs::read_to_string(&release_path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let record = BuildRecord {
        recipe_version: key::RECIPE_VERSION,
        key: key.to_string(),
        arch: req.arch.name().to_string(),
        debug: req.debug,
        source_path: req.source.clone(),
        source_sha256: source_sha256.to_string(),
        fragments: fragments
            .fragments
            .iter()
            .map(|f| f.label.clone())
            .collect(),
        options_requested: fragments.requirements.len(),
        kernel_release,
        jobs: req.jobs,
        objects,
        seconds_extract,
        seconds_configure,
        seconds_compile,
        bzimage_bytes: fsutil::file_size(&stage.join(BZIMAGE))?,
        vmlinux_bytes: fsutil::file_size(&stage.join(VMLINUX))?,
        built_at_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let json = serde_json::to_string_pretty(&record).map_err(|e| IoError {
        action: "serialize",
        path: stage.join(BUILD_RECORD),
        source: e.into(),
    })?;
    let record_path = stage.join(BUILD_RECORD);
    fs::write(&record_path, json + "\n").map_err(io_err("write", &record_path))?;
    commit_entry(&stage, &cache.kernel_entry(key), work)?;
    cache.set_kernel_object_count(objects);
    phase.done("");
    Ok(record)
}

/// Moves a fully written `stage` directory to `entry` with one rename. An existing entry
/// (a `--no-cache` rebuild, or a damaged one) is first moved aside into `work`. If another
/// build put a complete entry in place meanwhile, that one is kept.
fn commit_entry(stage: &Path, entry: &Path, work: &Path) -> Result<()> {
    if let Some(parent) = entry.parent() {
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    if entry.exists() {
        let aside = work.join("replaced-entry");
        fs::rename(entry, &aside).map_err(io_err("move aside", entry))?;
    }
    match fs::rename(stage, entry) {
        Ok(()) => Ok(()),
        Err(_) if entry_is_complete(entry) => {
            tracing::debug!("another build stored {} first", entry.display());
            Ok(())
        }
        Err(e) => Err(io_err("rename into place", entry)(e).into()),
    }
}

/// Copies the artifacts of a cached kernel into `out_dir` (created if needed), each file
/// atomically. Returns `(path, bytes)` of each.
pub fn install(kernel: &CachedKernel, out_dir: &Path) -> Result<Vec<(PathBuf, u64)>> {
    fs::create_dir_all(out_dir).map_err(io_err("create output directory", out_dir))?;
    let mut out = Vec::new();
    for name in ARTIFACTS {
        let dest = out_dir.join(name);
        let n = fsutil::copy_atomic(&kernel.artifact(name), &dest)?;
        out.push((dest, n));
    }
    write_manifest(kernel, out_dir)?;
    Ok(out)
}

/// Writes `DIR/manifest.json`: the artifacts (sizes, SHA-256), the config's hash, the
/// kernel release and the cache key.
pub fn write_manifest(kernel: &CachedKernel, out_dir: &Path) -> Result<()> {
    use crate::manifest::{self, KernelInfo, Manifest};
    let arch = kernel.record.as_ref().map_or("x86_64", |r| r.arch.as_str());
    let mut m = Manifest::new("kernel", arch, 0);
    for (role, name) in [
        ("vmlinux", VMLINUX),
        ("bzImage", BZIMAGE),
        ("kernel-config", CONFIG),
    ] {
        m.artifacts
            .push(manifest::artifact(role, &out_dir.join(name), out_dir)?);
    }
    m.kernel = Some(KernelInfo {
        config_sha256: m
            .artifact("kernel-config")
            .map(|a| a.sha256.clone())
            .unwrap_or_default(),
        release: kernel.record.as_ref().map(|r| r.kernel_release.clone()),
        cache_key: Some(kernel.key.clone()),
    });
    Ok(m.write(&out_dir.join(MANIFEST))?)
}

/// Human summary of installed artifacts: `bzImage 3.9 MB, vmlinux 20.1 MB, config 40.2 kB`.
pub fn describe(installed: &[(PathBuf, u64)]) -> String {
    installed
        .iter()
        .map(|(p, n)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            format!("{name} {}", fmt_size(*n))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_source_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let req = KernelRequest {
            source: dir.path().join("linux-source-6.1.tar.xz"),
            config_dir: dir.path().to_path_buf(),
            arch: Arch::X86_64,
            debug: false,
            jobs: 1,
            no_cache: false,
            keep_build_dir: false,
        };
        let err = ensure_built(&req, &Cache::new(dir.path()), &Progress::new(false)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("apt-get install linux-source-6.1"), "{msg}");
        assert!(msg.contains("linux-source-6.1.tar.xz"), "{msg}");
    }

    /// A fake tarball whose "kernel" Makefile writes a .config and the artifacts: runs the
    /// whole pipeline (hash, extract, configure, check, compile, cache, install) in a second.
    fn fake_tree(dir: &Path, dotconfig: &str) -> PathBuf {
        let tree = dir.join("linux-source-6.1");
        fs::create_dir_all(&tree).unwrap();
        fs::write(tree.join("dotconfig"), dotconfig).unwrap();
        let makefile = "\
allnoconfig:\n\tcp dotconfig .config\n\tmkdir -p include/config\n\techo 6.1.0-fake > include/config/kernel.release\n\
bzImage:\n\t@echo '  CC      init/main.o'\n\t@echo '  LD      vmlinux'\n\tmkdir -p arch/x86/boot\n\
\techo kernel > arch/x86/boot/bzImage\n\techo elf > vmlinux\n";
        fs::write(tree.join("Makefile"), makefile).unwrap();
        fake_tree_repack(dir)
    }

    fn request(dir: &Path, tarball: PathBuf) -> KernelRequest {
        let conf = dir.join("kernel-config");
        fs::create_dir_all(&conf).unwrap();
        fs::write(
            conf.join("00-base.conf"),
            "CONFIG_A=y\n# CONFIG_B is not set\n",
        )
        .unwrap();
        KernelRequest {
            source: tarball,
            config_dir: conf,
            arch: Arch::X86_64,
            debug: false,
            jobs: 2,
            no_cache: false,
            keep_build_dir: false,
        }
    }

    #[test]
    fn fake_kernel_pipeline_builds_caches_and_installs() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = fake_tree(dir.path(), "CONFIG_A=y\n# CONFIG_B is not set\n");
        let req = request(dir.path(), tarball);
        let cache = Cache::new(dir.path().join("cache"));
        let progress = Progress::new(false);

        let first = ensure_built(&req, &cache, &progress).unwrap();
        assert!(!first.hit);
        let record = first.record.clone().unwrap();
        assert_eq!(record.objects, 2);
        assert_eq!(record.kernel_release, "6.1.0-fake");
        assert!(entry_is_complete(&first.entry));
        // The work dir is gone, and the object count remembered.
        assert_eq!(fs::read_dir(cache.kernel_work_root()).unwrap().count(), 0);
        assert_eq!(cache.kernel_object_count(), Some(2));

        let second = ensure_built(&req, &cache, &progress).unwrap();
        assert!(second.hit);
        assert_eq!(second.key, first.key);

        let out = dir.path().join("out");
        let installed = install(&second, &out).unwrap();
        assert_eq!(installed.len(), 3);
        assert_eq!(fs::read_to_string(out.join(BZIMAGE)).unwrap(), "kernel\n");
        assert_eq!(fs::read_to_string(out.join(VMLINUX)).unwrap(), "elf\n");
        assert!(
            fs::read_to_string(out.join(CONFIG))
                .unwrap()
                .contains("CONFIG_A=y")
        );

        // --no-cache rebuilds and replaces the entry.
        let again = ensure_built(
            &KernelRequest {
                no_cache: true,
                ..req.clone()
            },
            &cache,
            &progress,
        )
        .unwrap();
        assert!(!again.hit);
        assert!(entry_is_complete(&again.entry));

        // Changing a fragment changes the key.
        fs::write(
            req.config_dir.join("10-more.conf"),
            "# CONFIG_C is not set\n",
        )
        .unwrap();
        let third = ensure_built(&req, &cache, &progress).unwrap();
        assert!(!third.hit);
        assert_ne!(third.key, first.key);
    }

    #[test]
    fn fake_kernel_with_missing_options_fails_before_compiling() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = fake_tree(dir.path(), "CONFIG_B=y\n");
        let req = request(dir.path(), tarball);
        let cache = Cache::new(dir.path().join("cache"));
        let err = ensure_built(&req, &cache, &Progress::new(false)).unwrap_err();
        let KernelError::OptionsNotLanded(nl) = &err else {
            panic!("unexpected {err:?}");
        };
        assert_eq!(nl.mismatches.len(), 2);
        // Nothing entered the cache, and compile never ran.
        let key_dirs: Vec<_> = fs::read_dir(cache.kernel_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().len() == 64)
            .collect();
        assert!(key_dirs.is_empty());
        let work = fs::read_dir(cache.kernel_work_root())
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        assert!(!work.join("src/linux-source-6.1/vmlinux").exists());
    }

    #[test]
    fn failing_make_reports_command_status_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let tarball = fake_tree(dir.path(), "CONFIG_A=y\n");
        // Rebuild the tarball with a Makefile whose bzImage target fails.
        let tree = dir.path().join("linux-source-6.1");
        let mk = fs::read_to_string(tree.join("Makefile")).unwrap();
        let mk = mk.replace("\tmkdir -p arch/x86/boot\n", "\t@echo boom >&2; exit 7\n");
        fs::write(tree.join("Makefile"), mk).unwrap();
        fs::remove_file(&tarball).unwrap();
        let tarball = fake_tree_repack(dir.path());
        let req = request(dir.path(), tarball);
        let cache = Cache::new(dir.path().join("cache"));
        let err = ensure_built(&req, &cache, &Progress::new(false)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                KernelError::Command(crate::command::CommandError::Failed { .. })
            ),
            "{err:?}"
        );
        assert!(msg.contains("make -C"), "{msg}");
        assert!(msg.contains("bzImage"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains("build.log"), "{msg}");
    }

    fn fake_tree_repack(dir: &Path) -> PathBuf {
        let tarball = dir.join("src.tar");
        let ok = std::process::Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir)
            .arg("linux-source-6.1")
            .status()
            .unwrap()
            .success();
        assert!(ok);
        tarball
    }
}
