//! End-to-end tests of the `hull-image` binary that run in seconds. (The real kernel build
//! takes ~9 minutes and is not run here; see the crate's README.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hull_image::initrd::cpio::{Archive, Entry, Kind};
use hull_image::initrd::elf;

fn hull_image() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hull-image"));
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run hull-image")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fake static guest binaries (well-formed ELF headers; never executed).
fn guest_binaries(dir: &Path) -> (PathBuf, PathBuf) {
    let init = dir.join("hull-init");
    let agent = dir.join("hull-agent");
    fs::write(&init, elf::synthesize(62, None)).unwrap();
    let mut a = elf::synthesize(62, None);
    a.extend_from_slice(&[0x42; 3000]);
    fs::write(&agent, a).unwrap();
    (init, agent)
}

fn initrd(dir: &Path, out: &str, sde: Option<&str>) -> (Output, PathBuf) {
    let (init, agent) = guest_binaries(dir);
    let path = dir.join(out);
    let mut cmd = hull_image();
    cmd.arg("initrd")
        .arg("-o")
        .arg(&path)
        .arg("--init")
        .arg(&init)
        .arg("--agent")
        .arg(&agent);
    if let Some(v) = sde {
        cmd.env("SOURCE_DATE_EPOCH", v);
    }
    (run(&mut cmd), path)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn initrd_is_reproducible_and_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let (o1, a) = initrd(dir.path(), "a.img", None);
    assert!(o1.status.success(), "{}", stderr(&o1));
    let (o2, b) = initrd(dir.path(), "b.img", None);
    assert!(o2.status.success(), "{}", stderr(&o2));
    let bytes = fs::read(&a).unwrap();
    assert_eq!(bytes, fs::read(&b).unwrap());
    // One-line summary: path, size, sha256.
    let out = String::from_utf8(o1.stdout).unwrap();
    let line = out.trim_end();
    assert!(!line.contains('\n'), "{out}");
    assert!(line.starts_with(&a.display().to_string()), "{line}");
    assert!(line.contains(&format!(" {} bytes ", bytes.len())), "{line}");
    assert!(line.contains("sha256:"), "{line}");
    // No temporary file left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn source_date_epoch_changes_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (o1, a) = initrd(dir.path(), "a.img", None);
    let (o2, b) = initrd(dir.path(), "b.img", Some("1700000000"));
    let (o3, c) = initrd(dir.path(), "c.img", Some("1700000000"));
    assert!(o1.status.success() && o2.status.success() && o3.status.success());
    assert_ne!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    assert_eq!(fs::read(&b).unwrap(), fs::read(&c).unwrap());
    let (bad, _) = initrd(dir.path(), "d.img", Some("yesterday"));
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("SOURCE_DATE_EPOCH"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn gzip_and_cpio_read_the_initrd() {
    assert!(
        have("cpio") && have("gzip"),
        "cpio and gzip are needed (`just setup` installs cpio)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (o, img) = initrd(dir.path(), "initrd.img", None);
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc \"$1\" | cpio -t --quiet")
        .arg("sh")
        .arg(&img)
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", stderr(&listing));
    let names: Vec<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    for want in [
        "init",
        "usr/bin/hull-agent",
        "dev/console",
        "dev/null",
        "etc/passwd",
        "etc/group",
        "etc/hostname",
        "etc/os-release",
        "etc/nsswitch.conf",
        "tmp",
        "proc",
        "sys",
        "run",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    // Parents come before their children.
    for (i, n) in names.iter().enumerate() {
        if let Some((parent, _)) = n.rsplit_once('/') {
            let p = names.iter().position(|x| x == parent).unwrap();
            assert!(p < i, "{parent} after {n}");
        }
    }
    // The verbose listing shows the device nodes and modes.
    let verbose = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc \"$1\" | cpio -tv --quiet")
        .arg("sh")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verbose.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not in {text}"))
            .to_string()
    };
    assert!(line("dev/console").starts_with("crw-------"), "{text}");
    assert!(line("dev/console").contains("5,"), "{text}");
    assert!(line("dev/null").starts_with("crw-rw-rw-"), "{text}");
    assert!(line("tmp").starts_with("drwxrwxrwt"), "{text}");
    assert!(line("init").starts_with("-rwxr-xr-x"), "{text}");
    assert!(
        line("usr/bin/hull-agent").starts_with("-rwxr-xr-x"),
        "{text}"
    );
}

#[test]
fn cpio_extracts_what_the_writer_wrote() {
    assert!(have("cpio"), "cpio is needed (`just setup` installs it)");
    let dir = tempfile::tempdir().unwrap();
    let mut a = Archive::new();
    let files: [(&str, u32, &[u8]); 4] = [
        ("a/b/c.txt", 0o644, b"hello\n"),
        ("a/run.sh", 0o755, b"#!/bin/sh\necho hi\n"),
        ("empty", 0o600, b""),
        (
            "odd-name.with.dots-and_17_bytes",
            0o640,
            &[0u8, 1, 2, 3, 255],
        ),
    ];
    for (path, perm, data) in files {
        a.add(
            path,
            Entry {
                perm,
                kind: Kind::File(data.to_vec()),
            },
        )
        .unwrap();
    }
    a.add(
        "a/link",
        Entry {
            perm: 0o777,
            kind: Kind::Symlink("b/c.txt".into()),
        },
    )
    .unwrap();
    let archive = dir.path().join("x.cpio");
    fs::write(&archive, a.to_bytes(1_600_000_000).unwrap()).unwrap();
    let dest = dir.path().join("x");
    fs::create_dir(&dest).unwrap();
    let status = Command::new("cpio")
        .args(["-i", "-d", "-m", "--quiet", "--no-absolute-filenames", "-F"])
        .arg(&archive)
        .current_dir(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for (path, perm, data) in files {
        let p = dest.join(path);
        assert_eq!(fs::read(&p).unwrap(), data, "{path}");
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, perm, "{path}");
        assert_eq!(meta.mtime(), 1_600_000_000, "{path}");
    }
    assert_eq!(
        fs::read_link(dest.join("a/link")).unwrap(),
        PathBuf::from("b/c.txt")
    );
}

#[test]
fn initrd_input_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (init, agent) = guest_binaries(dir.path());
    let out = dir.path().join("initrd.img");

    let o = run(hull_image()
        .args(["initrd", "-o"])
        .arg(&out)
        .arg("--init")
        .arg(dir.path().join("missing-init"))
        .arg("--agent")
        .arg(&agent));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("missing-init") && e.contains("just guest"),
        "{e}"
    );

    let dynamic = dir.path().join("dynamic-agent");
    fs::write(
        &dynamic,
        elf::synthesize(62, Some("/lib64/ld-linux-x86-64.so.2")),
    )
    .unwrap();
    let o = run(hull_image()
        .args(["initrd", "-o"])
        .arg(&out)
        .arg("--init")
        .arg(&init)
        .arg("--agent")
        .arg(&dynamic));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("dynamically linked") && e.contains("dynamic-agent"),
        "{e}"
    );

    let o = run(hull_image()
        .args(["initrd", "-o"])
        .arg(dir.path().join("no-such-dir/initrd.img"))
        .arg("--init")
        .arg(&init)
        .arg("--agent")
        .arg(&agent));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-dir"), "{}", stderr(&o));

    let o = run(hull_image()
        .args(["initrd", "-o"])
        .arg(&out)
        .arg("--init")
        .arg(&init)
        .arg("--agent")
        .arg(&agent)
        .args(["--extra", "relative-dst-is-wrong:etc/x"]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--extra"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn kernel_errors_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");

    let o = run(hull_image()
        .env("HULL_CACHE", &cache)
        .args(["kernel", "-o"])
        .arg(dir.path().join("out"))
        .arg("--source")
        .arg(dir.path().join("linux-source-6.1.tar.xz")));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("apt-get install linux-source-6.1"),
        "{}",
        stderr(&o)
    );

    // A malformed fragment is reported with file:line before the source is even hashed.
    let conf = dir.path().join("kernel-config");
    fs::create_dir(&conf).unwrap();
    fs::write(conf.join("00-base.conf"), "CONFIG_A=y\nCONFIG_B = y\n").unwrap();
    let tarball = dir.path().join("src.tar.xz");
    fs::write(&tarball, b"not really").unwrap();
    let o = run(hull_image()
        .env("HULL_CACHE", &cache)
        .args(["kernel", "-o"])
        .arg(dir.path().join("out"))
        .arg("--source")
        .arg(&tarball)
        .arg("--config-dir")
        .arg(&conf));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("00-base.conf:2"), "{e}");
    assert!(!e.contains("hashing"), "{e}");
}
