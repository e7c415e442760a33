#!/usr/bin/env bash
# Set-up for `make test-deploy` on a machine without a container registry:
# installs podman (+ runc, podman-compose, debootstrap), builds the base
# image debian:bookworm-slim from Debian packages (debootstrap minbase,
# `podman import`), and writes a containers.conf with what this machine
# needs (runc, cgroupfs, low explicit ulimits: the defaults fail here with
# "setrlimit ... Operation not permitted"). Nothing here goes into the
# artifacts users get. Idempotent: the base image is built once and reused.
# Prints the CONTAINERS_CONF path to export on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "deploy-test-setup: run as root (podman as root here)" >&2; exit 1; }

pkgs=()
for p in podman runc debootstrap podman-compose; do
  dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing: ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${pkgs[@]}" >/dev/null; }
fi

state=${GATEHOUSE_DEPLOY_TEST_DIR:-/var/tmp/gatehouse-deploy-test}
mkdir -p "$state"
conf=$state/containers.conf
cat > "$conf" <<CONF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF=$conf

base=${BASE_IMAGE:-debian:bookworm-slim}
if ! podman image exists "$base"; then
  root=$state/rootfs
  if [ ! -x "$root/bin/sh" ] || [ ! -f "$state/rootfs.done" ]; then
    rm -rf "$root"
    echo "debootstrap --variant=minbase bookworm $root (a few minutes)" >&2
    # ca-certificates is preinstalled so the image build needs no network;
    # on the real debian:bookworm-slim the Containerfile installs it.
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" http://deb.debian.org/debian >"$state/debootstrap.log" 2>&1
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    touch "$state/rootfs.done"
  fi
  tar -C "$root" -c . | podman import - "$base" >/dev/null
  echo "imported $base" >&2
fi
# No Redis image is served here either: the Compose test runs Debian's
# redis-server in an image built from the same base.
if ! podman image exists gatehouse-test-redis:7; then
  mkdir -p "$state/redis"
  printf 'ARG BASE\nFROM ${BASE}\nRUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*\n' > "$state/redis/Containerfile"
  podman build -q --build-arg BASE="$base" -t gatehouse-test-redis:7 "$state/redis" >/dev/null
  echo "built gatehouse-test-redis:7" >&2
fi
echo "CONTAINERS_CONF=$conf"
