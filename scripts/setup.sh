#!/usr/bin/env bash
# Installs what building and testing hull needs on a Debian 12 host, and nothing twice:
# Debian packages with apt, host tools with `cargo install` into the tool cache
# ($HULL_CACHE/tools, outside the repository).
set -euo pipefail

cache="${HULL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hull}"

debian_packages=(
    qemu-system-x86      # boots guests (KVM where the host has it, TCG otherwise)
    linux-source-6.1     # the guest kernel's source
    flex bison bc libelf-dev libssl-dev xz-utils  # the kernel build
    e2fsprogs erofs-utils cpio  # image filesystems, initrd inspection
    cryptsetup-bin       # veritysetup: the tests cross-check hull-image's dm-verity tree with it
    busybox-static       # debug tools and the demo container
    iptables             # baked into the guest by `hull-image ... --with-iptables` (GetIPTables/SetIPTables)
    libseccomp-dev libcap-ng-dev pkg-config       # building virtiofsd
)
# name version: pinned so every machine runs the same tools.
cargo_tools=(
    "vhost-device-vsock 0.3.0"
    "virtiofsd 1.14.0"
)

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

missing=()
for pkg in "${debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$cache/tools"
for tool in "${cargo_tools[@]}"; do
    read -r name version <<<"$tool"
    if ! "$cache/tools/bin/$name" --version 2>/dev/null | grep -q " $version\$"; then
        echo "setup: installing $name $version into $cache/tools (a few minutes, once)" >&2
        cargo install --quiet --locked --root "$cache/tools" --version "$version" "$name"
    fi
done
echo "setup: host ready (tools in $cache/tools/bin)" >&2
