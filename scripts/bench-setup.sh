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
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${missing[*]}; run as root or: apt-get install ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
fi

# abode itself, built as the ./abode launcher builds it (scripts/bootstrap.sh also compiles bench/), so
# that the launcher does not rebuild while it is being timed.
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ ! -x native/build/abode-shim ] || [ ! -f dist/bench/main.js ] ||
  [ -n "$(find src native bench package.json -newer "$stamp" -not -path 'native/build/*' -print -quit 2>/dev/null)" ]; then
  ./scripts/bootstrap.sh || { say "the build failed (see above)"; exit 1; }
fi
