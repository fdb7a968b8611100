#!/usr/bin/env bash
# Builds, once, Kueue's manager (sigs.k8s.io/kueue/cmd/kueue) from the Go module proxy and
# extracts the manifests it needs at run time from the module cache:
#
#   $KUEUE_DIR/bin/kueue                     the manager binary
#   $KUEUE_DIR/crd/*.yaml                    CustomResourceDefinitions (config/components/crd/bases)
#   $KUEUE_DIR/webhook/manifests.yaml        Mutating/ValidatingWebhookConfiguration (service-based,
#                                            as shipped: paths are read from it, clientConfig is rewritten
#                                            for loopback by the caller)
#   $KUEUE_DIR/manager/controller_manager_config.yaml   the default Configuration
#   $KUEUE_DIR/rbac/*.yaml                   ClusterRole of the manager (only needed when it does
#                                            not run with admin credentials)
#   $KUEUE_DIR/build-stats.txt               wall/CPU time, peak RSS and size of the last build
#
# IACNAS_KUEUE_DIR defaults to ~/.cache/iac-operator/kueue-<version> (test/cluster/kueue.ts
# looks there). A binary already there is not rebuilt; the manifests are copied again each
# run (cheap).
#
# sigs.k8s.io/kueue v0.17.0's go.mod has no replace directives, so `go install pkg@version`
# accepts it. Should a release add some, the fallback is a throw-away wrapper module that
# requires sigs.k8s.io/kueue (the same approach as test/cluster/build.sh for k8s.io/kubernetes).
#
# Env: KUEUE_VERSION (v0.17.0), IACNAS_KUEUE_DIR, IACNAS_BUILD_NICE (19: the build yields to
#      everything else on the machine), KUEUE_FORCE_WRAPPER=1 (skip the `go install` attempt).
set -euo pipefail

KUEUE_VERSION="${KUEUE_VERSION:-v0.17.0}"
KUEUE_DIR="${IACNAS_KUEUE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/iac-operator/kueue-${KUEUE_VERSION}}"
NICE="${IACNAS_BUILD_NICE:-19}"
BIN="$KUEUE_DIR/bin/kueue"
MODULE=sigs.k8s.io/kueue

command -v go >/dev/null 2>&1 || {
  echo "build-kueue.sh: Go (>= 1.25) is required; Kueue ${KUEUE_VERSION}'s go.mod says 'go 1.25.0'" >&2
  exit 1
}

mkdir -p "$KUEUE_DIR/bin"
work=$(mktemp -d "${TMPDIR:-/tmp}/iacnas-kueue-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# GOTOOLCHAIN=local: never let `go` try to download a newer toolchain (go 1.25.0 directive).
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
gorun() { nice -n "$NICE" go "$@"; }

# The module's source tree (read-only) in the module cache, for the manifests.
gorun mod download -json "${MODULE}@${KUEUE_VERSION}" >"$work/dl.json"
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$work/dl.json" | sed -n 1p)
[ -d "$src/config/components" ] || { echo "build-kueue.sh: ${MODULE}@${KUEUE_VERSION} not in the module cache ($src)" >&2; exit 1; }

if [ -x "$BIN" ]; then
  echo "build-kueue.sh: $BIN present, not rebuilt"
else
  echo "build-kueue.sh: building ${MODULE}/cmd/kueue ${KUEUE_VERSION} (cold: about 6 min on 2 busy cores)"
  ld="-s -w -X ${MODULE}/pkg/version.GitVersion=${KUEUE_VERSION} -X ${MODULE}/pkg/version.BuildDate=1970-01-01T00:00:00Z"
  tv=()
  [ -x /usr/bin/time ] && tv=(/usr/bin/time -v -o "$work/time.txt")
  start=$(date +%s)
  built=0
  if [ -z "${KUEUE_FORCE_WRAPPER:-}" ]; then
    # go install writes <GOBIN>/kueue; GOBIN must be absolute.
    if GOBIN="$KUEUE_DIR/bin" "${tv[@]}" nice -n "$NICE" go install -trimpath -ldflags "$ld" "${MODULE}/cmd/kueue@${KUEUE_VERSION}" 2>"$work/install.err"; then
      built=1
    else
      cat "$work/install.err" >&2
      echo "build-kueue.sh: go install refused the module; falling back to a wrapper module" >&2
    fi
  fi
  if [ $built -eq 0 ]; then
    mkdir -p "$work/wrap"
    {
      echo "module iacnas.test/kueuebuild"
      echo
      grep -E '^go [0-9]' "$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' "$work/dl.json" | sed -n 1p)"
      echo
      echo "require ${MODULE} ${KUEUE_VERSION}"
    } >"$work/wrap/go.mod"
    (
      cd "$work/wrap"
      gorun get "${MODULE}/cmd/kueue@${KUEUE_VERSION}" >/dev/null
      "${tv[@]}" nice -n "$NICE" go build -trimpath -ldflags "$ld" -o "$BIN" "${MODULE}/cmd/kueue"
    )
  fi
  wall=$(( $(date +%s) - start ))
  size=$(stat -c %s "$BIN")
  {
    echo "kueue ${KUEUE_VERSION} built $(date -u +%Y-%m-%dT%H:%M:%SZ) with $(go version | cut -d' ' -f3) on $(nproc) cores (nice ${NICE})"
    echo "wall_seconds: ${wall}"
    echo "binary_bytes: ${size} ($(( size / 1048576 )) MiB, stripped -s -w)"
    if [ -f "$work/time.txt" ]; then
      grep -E 'User time|System time|Elapsed|Maximum resident|Percent of CPU' "$work/time.txt"
    fi
  } | tee "$KUEUE_DIR/build-stats.txt"
fi

# Manifests, from the module cache (files there are read-only: copy, then make writable).
rm -rf "$KUEUE_DIR/crd" "$KUEUE_DIR/webhook" "$KUEUE_DIR/manager" "$KUEUE_DIR/rbac"
mkdir -p "$KUEUE_DIR/crd" "$KUEUE_DIR/webhook" "$KUEUE_DIR/manager" "$KUEUE_DIR/rbac"
cp "$src"/config/components/crd/bases/*.yaml "$KUEUE_DIR/crd/"
cp "$src"/config/components/webhook/manifests.yaml "$KUEUE_DIR/webhook/"
cp "$src"/config/components/manager/controller_manager_config.yaml "$KUEUE_DIR/manager/"
cp "$src"/config/components/rbac/role.yaml "$KUEUE_DIR/rbac/"
chmod -R u+w "$KUEUE_DIR/crd" "$KUEUE_DIR/webhook" "$KUEUE_DIR/manager" "$KUEUE_DIR/rbac"

ls -l "$BIN"
echo "build-kueue.sh: kueue ${KUEUE_VERSION} ready in $KUEUE_DIR ($(ls "$KUEUE_DIR/crd" | wc -l) CRDs)"
