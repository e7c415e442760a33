#!/usr/bin/env bash
# Installs what `make test` needs and is missing. As root it uses apt-get;
# otherwise it says what to install. Idempotent and quiet when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || apt_pkgs+=("$2"); }
# Debian packages, by the command that shows them installed.
need redis-server redis-server
need redis-cli redis-tools
need node nodejs
need npm npm
need chromium chromium
need clickhouse-server clickhouse-server
need systemd-analyze systemd   # deploy tests: systemd-analyze verify on the units

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

# npm packages (test emulators), installed into .tools/node. Add yours to the list.
npm_pkgs=(s3rver@3.7.1 dynalite@4.0.0)
missing=()
for p in "${npm_pkgs[@]}"; do
  [ -d ".tools/node/node_modules/${p%@*}" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing npm packages: ${missing[*]}"
  mkdir -p .tools/node
  npm install --silent --no-audit --no-fund --prefix .tools/node "${missing[@]}" >/dev/null
fi

# Go-installed tools, into .tools/bin. Add yours as "name=module/cmd@version".
go_tools=()
for t in "${go_tools[@]}"; do
  name=${t%%=*}; pkg=${t#*=}
  [ -x ".tools/bin/$name" ] || { echo "installing $pkg"; GOBIN="$PWD/.tools/bin" go install "$pkg"; }
done

