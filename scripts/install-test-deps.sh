#!/usr/bin/env bash
# Installs what `make test` needs and is missing. As root it uses apt-get;
# otherwise it says what to install. Idempotent and quiet when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || apt_pkgs+=("$2"); }
need redis-server redis-server

if [ ${#apt_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${apt_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${apt_pkgs[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${apt_pkgs[@]}" >/dev/null; }
  else
    echo "missing test dependencies: ${apt_pkgs[*]} (run as root, or: sudo apt-get install -y ${apt_pkgs[*]})" >&2
    exit 1
  fi
fi
