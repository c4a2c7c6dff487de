#!/usr/bin/env bash
# Sets up podman (and podman-compose) on a Debian 12 machine without a Docker
# engine or a container registry, for scripts/container_test.sh. Idempotent:
# installs only missing packages, writes containers.conf only when it
# differs, and builds the local debian:bookworm-slim base image only when it
# is missing.
#
#   scripts/install_container_tools.sh
#
# What it sets and why:
# - /etc/containers/containers.conf: open-file limits no higher than this
#   machine's hard limit (podman's default asks for more, and setrlimit fails
#   with "Operation not permitted"), and the runc runtime (crun refuses
#   cgroups in hybrid v1/v2 mode).
# - docker.io/library/debian:bookworm-slim made with debootstrap from the
#   Debian mirror apt already uses, so `FROM debian:bookworm-slim` resolves
#   without a registry (build with --pull=never).
set -euo pipefail

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi

packages=(
  podman runc catatonit buildah netavark aardvark-dns iptables
  fuse-overlayfs slirp4netns uidmap debootstrap podman-compose
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]} > 0)); then
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

nofile=$(ulimit -Hn)
if [[ $nofile == unlimited ]]; then nofile=1048576; fi
conf=$(
  cat <<CONF
# Written by scripts/install_container_tools.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
CONF
)
conf_file=/etc/containers/containers.conf
if [[ ! -f $conf_file ]] || [[ "$(grep -v '^#' "$conf_file")" != "$(grep -v '^#' <<<"$conf")" ]]; then
  if [[ -f $conf_file ]]; then
    $sudo cp "$conf_file" "$conf_file.bak"
    echo "Replacing $conf_file (previous one kept as $conf_file.bak)"
  fi
  $sudo mkdir -p /etc/containers
  $sudo tee "$conf_file" >/dev/null <<<"$conf"
fi

base=docker.io/library/debian:bookworm-slim
if ! $sudo podman image exists "$base"; then
  echo "Building the base image $base with debootstrap (no registry here)"
  sources=/etc/apt/sources.list.d/debian.sources
  mirror=$(awk '/^URIs:/{print $2; exit}' "$sources" 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d)
  trap '$sudo rm -rf "$rootfs"' EXIT
  $sudo debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
  if [[ -f $sources ]]; then
    $sudo rm -f "$rootfs/etc/apt/sources.list"
    $sudo cp "$sources" "$rootfs/etc/apt/sources.list.d/"
  fi
  $sudo rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  $sudo tar -C "$rootfs" -c . | $sudo podman import --change 'CMD ["bash"]' - "$base"
fi
