#!/usr/bin/env bash
# Installs everything abode needs on a Debian host (idempotent), then builds the TypeScript and the C helpers.
set -euo pipefail
here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$here"
say() { printf 'abode setup: %s\n' "$*" >&2; }

# Debian packages: the C toolchain, tools the runtime calls, and the peers tests and benchmarks compare with.
packages=(gcc make libc6-dev procps iproute2 attr e2fsprogs runc docker-registry skopeo apache2-utils qemu-system-x86 qemu-utils tmux cpio debootstrap umoci buildah podman zstd libcap2-bin)
. "$here/scripts/debian-packages.sh"
ensure_debian_packages "${packages[@]}"

if [ ! -d node_modules ] || [ package.json -nt node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
say "building"
npx tsc -p tsconfig.json >&2
make -s -C native >&2
touch dist/.build-stamp
