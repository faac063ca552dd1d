//! The container spec host tests send: the least a busybox container needs, as the
//! protobuf `CreateContainer` carries it. Tests add what they are about on top.

use std::path::Path;

use hull_protocols::oci;

/// A spec running `args` (from `/`, as root, `PATH=/bin`) in `rootfs`, in cgroup
/// `cgroup`, with new namespaces of the `namespaces` types (`"mount"`, `"pid"`, ...)
/// and `/proc` mounted.
pub fn container_spec(
    rootfs: &Path,
    cgroup: &str,
    args: &[&str],
    namespaces: &[&str],
) -> oci::Spec {
    let mut process = oci::Process::new();
    process.Args = args.iter().map(|s| s.to_string()).collect();
    process.Env = vec!["PATH=/bin".into()];
    process.Cwd = "/".into();
    process.User = Some(oci::User::new()).into();
    let mut linux = oci::Linux::new();
    linux.Namespaces = namespaces
        .iter()
        .map(|t| oci::LinuxNamespace {
            Type: t.to_string(),
            ..Default::default()
        })
        .collect();
    linux.CgroupsPath = cgroup.into();
    let mut spec = oci::Spec::new();
    spec.Version = "1.0.2".into();
    spec.Root = Some(oci::Root {
        Path: rootfs.display().to_string(),
        ..Default::default()
    })
    .into();
    spec.Process = Some(process).into();
    spec.Mounts = vec![oci::Mount {
        destination: "/proc".into(),
        type_: "proc".into(),
        source: "proc".into(),
        ..Default::default()
    }];
    spec.Linux = Some(linux).into();
    spec
}
