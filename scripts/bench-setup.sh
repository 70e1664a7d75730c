#!/usr/bin/env bash
# Installs the peers the benchmarks compare abode with (podman, runc; for the image ones skopeo, umoci and
# docker-registry, the local registry they pull from) and builds abode (idempotent).
# No pulls from outside: the benchmarks give podman abode's own busybox rootfs with `podman import`, and
# the image benchmarks push a generated image to a docker-registry on 127.0.0.1.
set -euo pipefail
here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
cd "$here"
say() { printf 'abode bench setup: %s\n' "$*" >&2; }

# podman with runc as its runtime; as root with --network none it needs neither fuse-overlayfs nor slirp4netns.
packages=(podman runc procps skopeo umoci docker-registry)
. "$here/scripts/debian-packages.sh"
ensure_debian_packages "${packages[@]}"

# abode itself, built as the ./abode launcher builds it (scripts/bootstrap.sh also compiles bench/), so
# that the launcher does not rebuild while it is being timed.
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ ! -x native/build/abode-shim ] || [ ! -f dist/bench/main.js ] ||
  [ -n "$(find src native bench package.json -newer "$stamp" -not -path 'native/build/*' -print -quit 2>/dev/null)" ]; then
  ./scripts/bootstrap.sh || { say "the build failed (see above)"; exit 1; }
fi
