//! `hull-image rootfs`, `image` and `attach` end to end (no VM: the boot tests are in
//! `tests/tests/image.rs`): reproducibility of every artifact, the manifest's contents, the
//! bytes at the layout's offsets, the dm-verity tree against `veritysetup`, and the errors.
//!
//! Needs e2fsprogs and erofs-utils (`just setup` installs them); the guest binaries are
//! synthetic static ELF files, so `just guest` is not needed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hull_image::disk::{mbr, pfn};
use hull_image::initrd::elf;
use hull_image::manifest::Manifest;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

fn hull_image() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hull-image"));
    cmd.env_remove("SOURCE_DATE_EPOCH").arg("-q");
    cmd
}

/// Runs `cmd`. A copy of hull-image written by a test may still be open for writing in
/// a child another test thread forked meanwhile (until that child execs): exec then
/// fails with ETXTBSY for a moment, and is retried.
fn run(cmd: &mut Command) -> Output {
    let start = std::time::Instant::now();
    loop {
        match cmd.output() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && start.elapsed() < std::time::Duration::from_secs(5) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.expect("run hull-image"),
        }
    }
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "hull-image failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Inputs every build of a test uses: synthetic static binaries, an extra file, and a
/// fake `hull-image kernel` output directory (the same bytes in every build directory, so
/// relative paths in manifests match).
struct Inputs {
    init: PathBuf,
    agent: PathBuf,
    extra: PathBuf,
}

fn inputs(dir: &Path) -> Inputs {
    let init = dir.join("hull-init");
    let agent = dir.join("hull-agent");
    fs::write(&init, elf::synthesize(62, None)).unwrap();
    let mut a = elf::synthesize(62, None);
    // A few hundred KiB, so the filesystems hold real data blocks.
    a.extend((0..400_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    fs::write(&agent, a).unwrap();
    let extra = dir.join("motd");
    fs::write(&extra, "hull test image\n").unwrap();
    Inputs { init, agent, extra }
}

fn fake_kernel(dir: &Path) -> PathBuf {
    let k = dir.join("kernel");
    fs::create_dir_all(&k).unwrap();
    fs::write(k.join("vmlinux"), b"\x7fELF fake vmlinux").unwrap();
    fs::write(k.join("bzImage"), b"fake bzImage").unwrap();
    fs::write(k.join("config"), b"CONFIG_FS_DAX=y\n").unwrap();
    k
}

fn tree_args(cmd: &mut Command, i: &Inputs) {
    cmd.arg("--init")
        .arg(&i.init)
        .arg("--agent")
        .arg(&i.agent)
        .arg("--extra")
        .arg(format!("{}:/etc/motd", i.extra.display()));
}

fn build_image(i: &Inputs, out: &Path, extra_args: &[&str]) -> Output {
    let kernel = fake_kernel(out.parent().unwrap());
    let mut cmd = hull_image();
    cmd.arg("image")
        .arg("-o")
        .arg(out)
        .arg("--kernel")
        .arg(kernel);
    cmd.args(extra_args);
    tree_args(&mut cmd, i);
    run(&mut cmd)
}

fn busybox() -> Option<&'static str> {
    Path::new("/bin/busybox")
        .is_file()
        .then_some("/bin/busybox")
}

/// Every file of a directory tree: path -> (kind, mode, mtime, content or link target).
fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let (kind, data) = if meta.file_type().is_symlink() {
            (
                'l',
                fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if meta.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            ('d', Vec::new())
        } else {
            ('f', fs::read(&p).unwrap())
        };
        out.insert(rel, (kind, meta.mode() & 0o7777, meta.mtime(), data));
    }
    out
}

/// Builds every artifact in `dir`: initrd, rootfs tree, ext4, erofs and verity images,
/// each with its manifest.
fn build_all(dir: &Path, i: &Inputs, sde: &str) {
    let mut initrd = hull_image();
    initrd
        .env("SOURCE_DATE_EPOCH", sde)
        .args(["initrd", "-o"])
        .arg(dir.join("initrd.img"))
        .arg("--init")
        .arg(&i.init)
        .arg("--agent")
        .arg(&i.agent);
    ok(run(&mut initrd));
    let mut rootfs = hull_image();
    rootfs
        .env("SOURCE_DATE_EPOCH", sde)
        .args(["rootfs", "-o"])
        .arg(dir.join("rootfs"));
    tree_args(&mut rootfs, i);
    if busybox().is_some() {
        rootfs.arg("--debug-tools");
    }
    ok(run(&mut rootfs));
    let kernel = fake_kernel(dir);
    for (name, args) in [
        ("rootfs.ext4.img", vec!["--fs", "ext4"]),
        ("rootfs.erofs.img", vec!["--fs", "erofs"]),
        ("rootfs.ext4-verity.img", vec!["--fs", "ext4", "--verity"]),
        (
            "rootfs.erofs-plain.img",
            vec!["--fs", "erofs", "--no-dax-header"],
        ),
    ] {
        let mut cmd = hull_image();
        cmd.env("SOURCE_DATE_EPOCH", sde)
            .args(["image", "-o"])
            .arg(dir.join(name))
            .arg("--kernel")
            .arg(&kernel)
            .args(args);
        tree_args(&mut cmd, i);
        ok(run(&mut cmd));
    }
}

const FILES: [&str; 11] = [
    "initrd.img",
    "initrd.img.manifest.json",
    "rootfs.manifest.json",
    "rootfs.ext4.img",
    "rootfs.ext4.img.manifest.json",
    "rootfs.erofs.img",
    "rootfs.erofs.img.manifest.json",
    "rootfs.ext4-verity.img",
    "rootfs.ext4-verity.img.manifest.json",
    "rootfs.erofs-plain.img",
    "rootfs.erofs-plain.img.manifest.json",
];

#[test]
fn every_artifact_is_reproducible_byte_for_byte() {
    let base = tempfile::tempdir().unwrap();
    let i = inputs(base.path());
    let a = base.path().join("a");
    let b = base.path().join("b");
    fs::create_dir(&a).unwrap();
    fs::create_dir(&b).unwrap();
    build_all(&a, &i, "1700000000");
    // Between the builds the inputs' own times change; the outputs must not.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for p in [&i.init, &i.agent, &i.extra] {
        let bytes = fs::read(p).unwrap();
        fs::write(p, bytes).unwrap();
    }
    build_all(&b, &i, "1700000000");
    for name in FILES {
        let x = fs::read(a.join(name)).unwrap();
        let y = fs::read(b.join(name)).unwrap();
        assert!(
            x == y,
            "{name} differs between two builds of the same inputs"
        );
    }
    assert_eq!(snapshot(&a.join("rootfs")), snapshot(&b.join("rootfs")));
    // No scratch or temporary files are left beside the outputs.
    for entry in fs::read_dir(&a).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".hull-image-work") && !name.contains(".tmp-"),
            "{name} left behind"
        );
    }
    // Another epoch gives other bytes (the epoch is really used).
    let c = base.path().join("c");
    fs::create_dir(&c).unwrap();
    build_all(&c, &i, "1600000000");
    for name in ["rootfs.ext4.img", "rootfs.erofs.img", "initrd.img"] {
        assert_ne!(
            fs::read(a.join(name)).unwrap(),
            fs::read(c.join(name)).unwrap(),
            "{name} ignores SOURCE_DATE_EPOCH"
        );
    }
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

#[test]
fn image_layout_and_manifest_contents() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(dir.path());
    let out = dir.path().join("rootfs.ext4.img");
    let stdout = ok(build_image(&i, &out, &[]));
    assert!(stdout.starts_with(&out.display().to_string()), "{stdout}");
    let img = fs::read(&out).unwrap();
    let size = img.len() as u64;
    assert_eq!(size % (2 * MIB), 0, "not 2 MiB-aligned: {size}");
    assert!(size <= 16 * MIB, "not sized to content: {size}");

    // MBR #1: partition 1 from 3 MiB to the end; MBR #2 at 2 MiB: from 1 MiB of it.
    let (sig1, p1) = mbr::decode_first(&img[..512]).unwrap();
    assert_eq!((p1.start_lba, p1.kind), (6144, 0x83));
    assert_eq!(u64::from(p1.start_lba + p1.sectors) * 512, size);
    let at2 = 2 * MIB as usize;
    let (sig2, p2) = mbr::decode_first(&img[at2..at2 + 512]).unwrap();
    assert_eq!(sig1, sig2);
    assert_eq!(p2.start_lba, 2048);
    assert_eq!(u64::from(p2.start_lba + p2.sectors) * 512 + 2 * MIB, size);
    // The pfn block at 4 KiB, checksum valid, data at 2 MiB.
    assert!(pfn::verify(&img[4096..8192]));
    assert_eq!(&img[4096..4112], b"NVDIMM_PFN_INFO\0");
    assert_eq!(&img[4096 + 56..4096 + 64], &(2 * MIB).to_le_bytes());
    // ext4 at 3 MiB: superblock magic 0xEF53, 4 KiB blocks.
    let fs0 = 3 * MIB as usize;
    assert_eq!(u16_at(&img, fs0 + 1024 + 56), 0xef53);
    assert_eq!(u32_at(&img, fs0 + 1024 + 24), 2, "log2(block size) - 10");

    let m = Manifest::read(&PathBuf::from(format!("{}.manifest.json", out.display()))).unwrap();
    assert_eq!(m.kind, "image");
    let a = m.artifact("image").unwrap();
    assert_eq!(a.path, "rootfs.ext4.img");
    assert_eq!(a.bytes, size);
    assert_eq!(a.sha256, hex::encode(Sha256::digest(&img)));
    assert!(stdout.contains(&a.sha256));
    let vmlinux = m.artifact("vmlinux").unwrap();
    assert_eq!(vmlinux.path, "kernel/vmlinux");
    assert!(m.artifact("bzImage").is_some());
    assert_eq!(
        m.kernel.as_ref().unwrap().config_sha256,
        hex::encode(Sha256::digest(b"CONFIG_FS_DAX=y\n"))
    );
    let info = m.image.as_ref().unwrap();
    assert_eq!(info.filesystem.name(), "ext4");
    assert!(info.layout.dax_header);
    assert_eq!(info.layout.fs_offset, 3 * MIB);
    assert_eq!(info.layout.total_bytes, size);
    assert!(info.verity.is_none());
    assert!(info.pfn_uuid.is_some());
    let rootfs = m.rootfs.as_ref().unwrap();
    let paths: Vec<&str> = rootfs.tree.iter().map(|e| e.path.as_str()).collect();
    for want in [
        "/sbin/init",
        "/usr/bin/hull-agent",
        "/etc/motd",
        "/proc",
        "/dev",
        "/tmp",
    ] {
        assert!(paths.contains(&want), "{want} not in {paths:?}");
    }
    let agent = rootfs
        .tree
        .iter()
        .find(|e| e.path == "/usr/bin/hull-agent")
        .unwrap();
    assert_eq!(
        agent.sha256.as_deref(),
        Some(hex::encode(Sha256::digest(fs::read(&i.agent).unwrap())).as_str())
    );
    let cmdlines: Vec<(String, &str, bool)> = m
        .attach
        .iter()
        .map(|a| (a.attachment.name().to_string(), a.cmdline.as_str(), a.dax))
        .collect();
    assert_eq!(
        cmdlines,
        [
            (
                "nvdimm".to_string(),
                "root=/dev/pmem0p1 rootfstype=ext4 ro rootflags=dax",
                true
            ),
            (
                "virtio-pmem".to_string(),
                "root=/dev/pmem0p1 rootfstype=ext4 ro rootflags=dax",
                true
            ),
            (
                "virtio-blk".to_string(),
                "root=/dev/vda1 rootfstype=ext4 ro",
                false
            ),
        ]
    );

    // The attach guide from the manifest: every VMM, read-only, absolute paths.
    let guide = ok(run(hull_image()
        .arg("attach")
        .arg(format!("{}.manifest.json", out.display()))));
    let abs = fs::canonicalize(&out).unwrap().display().to_string();
    for want in [
        format!("mem-path={abs},size={size},share=on,readonly=on"),
        "-device nvdimm,memdev=pm0,id=nv0,unarmed=on".into(),
        "virtio-pmem-pci".into(),
        format!("-drive file={abs},if=none,id=root,format=raw,readonly=on"),
        format!("--pmem file={abs},discard_writes=on"),
        format!("--disk path={abs},readonly=on"),
        "\"is_read_only\": true".into(),
        format!("image = \"{abs}\""),
        "kernel = \"".into(),
    ] {
        assert!(guide.contains(&want), "guide lacks {want:?}:\n{guide}");
    }
}

#[test]
fn erofs_plain_and_verity_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(dir.path());
    // erofs superblock magic at 1024 of the filesystem.
    let erofs = dir.path().join("e.img");
    ok(build_image(&i, &erofs, &["--fs", "erofs"]));
    let img = fs::read(&erofs).unwrap();
    assert_eq!(u32_at(&img, 3 * MIB as usize + 1024), 0xe0f5_e1e2);
    assert_eq!(img.len() as u64 % (2 * MIB), 0);

    // --no-dax-header: one MBR, filesystem at 1 MiB, no pfn block.
    let plain = dir.path().join("p.img");
    ok(build_image(
        &i,
        &plain,
        &["--fs", "erofs", "--no-dax-header"],
    ));
    let img = fs::read(&plain).unwrap();
    let (_, p) = mbr::decode_first(&img[..512]).unwrap();
    assert_eq!(p.start_lba, 2048);
    assert!(img[4096..8192].iter().all(|&b| b == 0));
    assert_eq!(u32_at(&img, MIB as usize + 1024), 0xe0f5_e1e2);
    let m = Manifest::read(&PathBuf::from(format!("{}.manifest.json", plain.display()))).unwrap();
    assert!(
        m.attach
            .iter()
            .all(|a| !a.dax && !a.cmdline.contains("dax"))
    );

    // --verity: root hash printed, in the manifest and the command lines; the tree sits
    // after the filesystem.
    let v = dir.path().join("v.img");
    let stdout = ok(build_image(&i, &v, &["--verity"]));
    let m = Manifest::read(&PathBuf::from(format!("{}.manifest.json", v.display()))).unwrap();
    let info = m.image.unwrap();
    let verity = info.verity.unwrap();
    assert!(
        stdout.contains(&format!("verity-root-hash:{}", verity.root_hash)),
        "{stdout}"
    );
    assert_eq!(verity.data_blocks * 4096, info.layout.fs_bytes);
    assert_eq!(verity.hash_start_block, verity.data_blocks);
    assert!(info.layout.hash_bytes > 0);
    for a in &m.attach {
        assert!(a.cmdline.contains(&verity.root_hash), "{}", a.cmdline);
        assert!(a.cmdline.contains("root=/dev/dm-0"), "{}", a.cmdline);
        assert!(!a.dax);
    }

    // Cross-check the tree with cryptsetup's veritysetup (`just setup` installs it).
    let veritysetup = ["/usr/sbin/veritysetup", "/sbin/veritysetup"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect(
            "veritysetup is missing, so the dm-verity tree cannot be cross-checked \
             (`just setup` installs cryptsetup-bin)",
        );
    let img = fs::read(&v).unwrap();
    let fs_off = info.layout.fs_offset as usize;
    let fs_end = fs_off + info.layout.fs_bytes as usize;
    let data = dir.path().join("data");
    fs::write(&data, &img[fs_off..fs_end]).unwrap();
    let hash = dir.path().join("hash");
    let o = Command::new(veritysetup)
        .args(["format", "--no-superblock", "--hash=sha256"])
        .arg(format!("--salt={}", verity.salt))
        .arg(&data)
        .arg(&hash)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains(&verity.root_hash), "veritysetup: {text}");
    assert_eq!(
        fs::read(&hash).unwrap(),
        &img[fs_end..fs_end + info.layout.hash_bytes as usize]
    );
}

#[test]
fn rootfs_tree_and_debug_tools() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(dir.path());
    let out = dir.path().join("tree");
    let mut cmd = hull_image();
    cmd.env("SOURCE_DATE_EPOCH", "1234")
        .args(["rootfs", "-o"])
        .arg(&out);
    tree_args(&mut cmd, &i);
    if busybox().is_some() {
        cmd.arg("--debug-tools");
    }
    ok(run(&mut cmd));
    assert_eq!(
        fs::read(out.join("sbin/init")).unwrap(),
        fs::read(&i.init).unwrap()
    );
    assert_eq!(
        fs::read(out.join("etc/motd")).unwrap(),
        b"hull test image\n"
    );
    for d in ["proc", "sys", "dev", "run", "tmp", "usr/bin"] {
        assert!(out.join(d).is_dir(), "{d}");
    }
    assert!(!out.join("dev/console").exists());
    let snap = snapshot(&out);
    assert!(snap.values().all(|(_, _, mtime, _)| *mtime == 1234));
    if busybox().is_some() {
        assert_eq!(
            fs::read_link(out.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert!(out.join("bin/busybox").is_file());
    }
    // The manifest lists the tree.
    let m = Manifest::read(&dir.path().join("tree.manifest.json")).unwrap();
    assert_eq!(m.kind, "rootfs");
    assert_eq!(m.rootfs.unwrap().tree.len(), snap.len() - 1); // minus the root itself

    // An existing, non-empty directory is not overwritten without --force.
    let mut again = hull_image();
    again.args(["rootfs", "-o"]).arg(&out);
    tree_args(&mut again, &i);
    let o = run(&mut again);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    again.arg("--force");
    ok(run(&mut again));
}

fn no_leftovers(dir: &Path, out: &Path) {
    assert!(!out.exists(), "{} exists after a failure", out.display());
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".hull-image-work") && !name.contains(".tmp-"),
            "{name} left behind"
        );
    }
}

#[test]
fn errors_name_the_fix_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(dir.path());
    let out = dir.path().join("out.img");

    // A rootfs that does not fit the requested size.
    let big = dir.path().join("big");
    fs::write(&big, vec![0x5au8; 6 * MIB as usize]).unwrap();
    for fs_type in ["ext4", "erofs"] {
        let mut cmd = hull_image();
        cmd.args(["image", "-o"])
            .arg(&out)
            .args(["--fs", fs_type, "--size", "4M"]);
        tree_args(&mut cmd, &i);
        cmd.arg("--extra").arg(format!("{}:/big", big.display()));
        let o = run(&mut cmd);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.contains("does not fit") && e.contains("--size"),
            "{fs_type}: {e}"
        );
        no_leftovers(dir.path(), &out);
    }

    // A size that is not a multiple of 2 MiB, and a bad flag value.
    let o = build_image(&i, &out, &["--size", "5M"]);
    assert!(stderr(&o).contains("multiple of 2 MiB"), "{}", stderr(&o));
    no_leftovers(dir.path(), &out);
    let o = build_image(&i, &out, &["--fs", "xfs"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("ext4") && stderr(&o).contains("erofs"),
        "{}",
        stderr(&o)
    );

    // An output directory that does not exist.
    let mut cmd = hull_image();
    cmd.args(["image", "-o"])
        .arg(dir.path().join("no-such-dir/x.img"));
    tree_args(&mut cmd, &i);
    let o = run(&mut cmd);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-dir"), "{}", stderr(&o));

    // A missing mkfs (mkfs.erofs is looked up on PATH, then /usr/sbin and /sbin only).
    if !Path::new("/usr/sbin/mkfs.erofs").exists() && !Path::new("/sbin/mkfs.erofs").exists() {
        let empty = dir.path().join("empty-path");
        fs::create_dir(&empty).unwrap();
        let o = run(hull_image()
            .env("PATH", &empty)
            .args(["image", "-o"])
            .arg(&out)
            .args(["--fs", "erofs"]));
        let e = stderr(&o);
        assert!(
            e.contains("mkfs.erofs") && e.contains("apt-get install erofs-utils"),
            "{e}"
        );
        no_leftovers(dir.path(), &out);
    }

    // Missing guest binaries and missing busybox name their fixes.
    let o = run(hull_image()
        .args(["image", "-o"])
        .arg(&out)
        .arg("--init")
        .arg(dir.path().join("missing-init"))
        .arg("--agent")
        .arg(&i.agent));
    assert!(stderr(&o).contains("just guest"), "{}", stderr(&o));
    no_leftovers(dir.path(), &out);
    let mut cmd = hull_image();
    cmd.args(["image", "-o"])
        .arg(&out)
        .args(["--debug-tools", "--busybox"])
        .arg(dir.path().join("nobusybox"));
    tree_args(&mut cmd, &i);
    let o = run(&mut cmd);
    assert!(stderr(&o).contains("busybox-static"), "{}", stderr(&o));
    no_leftovers(dir.path(), &out);

    // A kernel directory without a kernel.
    let o = run(hull_image()
        .args(["image", "-o"])
        .arg(&out)
        .arg("--kernel")
        .arg(dir.path())
        .arg("--init")
        .arg(&i.init)
        .arg("--agent")
        .arg(&i.agent));
    assert!(stderr(&o).contains("hull-image kernel"), "{}", stderr(&o));
}

/// Run as root, the same build as an unprivileged user (65534, no /usr/sbin on PATH) must
/// give the same bytes: ownership and times in the image come from hull-image, not from
/// who ran it. (Run as a normal user, every other test here is already rootless.)
#[test]
fn rootless_build_equals_root_build() {
    let is_root = fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    let (true, Some(setpriv)) = (is_root, setpriv) else {
        panic!("this test needs root and util-linux's setpriv to run a build as another user");
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let i = inputs(dir.path());
    for p in [&i.init, &i.agent, &i.extra] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let exe = dir.path().join("hull-image");
    fs::copy(env!("CARGO_BIN_EXE_hull-image"), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    for fs_type in ["ext4", "erofs"] {
        let mut outs = Vec::new();
        for user in ["root", "nobody"] {
            let out = dir.path().join(format!("{user}.{fs_type}.img"));
            let mut cmd = if user == "root" {
                Command::new(&exe)
            } else {
                let mut c = Command::new(setpriv);
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .arg(&exe)
                    .env("PATH", "/usr/bin:/bin");
                c
            };
            cmd.env_remove("SOURCE_DATE_EPOCH")
                .args(["-q", "image", "--fs", fs_type, "-o"])
                .arg(&out);
            tree_args(&mut cmd, &i);
            ok(run(&mut cmd));
            outs.push(fs::read(&out).unwrap());
        }
        assert!(outs[0] == outs[1], "{fs_type}: rootless build differs");
    }
}

#[test]
fn a_policy_goes_where_the_agent_reads_its_default_policy() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(dir.path());
    let policy = dir.path().join("policy.rego");
    fs::write(
        &policy,
        "package agent_policy\ndefault ExecProcessRequest := false\n",
    )
    .unwrap();
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o600)).unwrap();
    let out = dir.path().join("tree");
    let mut cmd = hull_image();
    cmd.args(["rootfs", "-o"])
        .arg(&out)
        .arg("--policy")
        .arg(&policy);
    tree_args(&mut cmd, &i);
    ok(run(&mut cmd));
    let installed = out.join(hull_image::initrd::AGENT_POLICY_PATH.trim_start_matches('/'));
    assert_eq!(fs::read(&installed).unwrap(), fs::read(&policy).unwrap());
    let mode = fs::metadata(&installed).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o644,
        "readable by the agent whatever the source's mode"
    );

    let mut missing = hull_image();
    missing
        .args(["rootfs", "-o"])
        .arg(dir.path().join("tree2"))
        .arg("--policy")
        .arg(dir.path().join("no-such.rego"));
    tree_args(&mut missing, &i);
    let o = run(&mut missing);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such.rego"), "{}", stderr(&o));
}

/// An image that carries a policy needs the agent with the policy engine: an agent that
/// says (`--version`) it was built without it is refused before anything is written; one
/// that cannot be asked (this synthetic agent) only brings a warning.
#[test]
fn a_policy_needs_the_agent_with_the_policy_engine() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(dir.path());
    let policy = dir.path().join("policy.rego");
    fs::write(&policy, "package agent_policy\n").unwrap();
    let without_engine = dir.path().join("agent-without-engine");
    fs::write(
        &without_engine,
        "#!/bin/sh\nprintf 'hull-agent 0.1.0\\nfeatures: none\\n'\n",
    )
    .unwrap();
    fs::set_permissions(&without_engine, fs::Permissions::from_mode(0o755)).unwrap();
    for command in ["initrd", "rootfs", "image"] {
        let out = dir.path().join(format!("refused-{command}"));
        let o = run(hull_image()
            .args([command, "-o"])
            .arg(&out)
            .arg("--init")
            .arg(&i.init)
            .arg("--agent")
            .arg(&without_engine)
            .arg("--policy")
            .arg(&policy));
        assert!(!o.status.success(), "{command}: built");
        let e = stderr(&o);
        assert!(
            e.contains("without the policy engine") && e.contains("hull-agent-policy"),
            "{command}: {e}"
        );
        assert!(!out.exists(), "{command}: {} written", out.display());
    }

    let out = dir.path().join("warned");
    let mut cmd = hull_image();
    cmd.args(["rootfs", "-o"])
        .arg(&out)
        .arg("--policy")
        .arg(&policy);
    tree_args(&mut cmd, &i);
    let o = run(&mut cmd);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("cannot tell whether the agent") && e.contains("hull-agent-policy"),
        "{e}"
    );
}
