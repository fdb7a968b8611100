#!/usr/bin/env bash
# Builds, once, the control-plane binaries the cluster tests run on loopback:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
# and the node binaries the real-node suites (test/node, docs/real-node.md) run:
#   kubelet, kube-proxy                                               (k8s.io/kubernetes)
# (the pause image those suites need is built by test/node/images.ts at their first run).
# from the Go module proxy (there is no release download nor Docker on CI machines).
#
# Output: $IACNAS_K8S_BIN_DIR (default ~/.cache/iac-operator/k8s-<version>/bin). A binary
# already there is not rebuilt, so a second run costs nothing. When KUBEBUILDER_ASSETS points
# at envtest binaries (kube-apiserver, etcd, kubectl), those are used and only the rest built.
#
# `go install pkg@version` refuses k8s.io/kubernetes because its go.mod replaces the staging
# modules (k8s.io/api, k8s.io/client-go, ...) with ./staging/ paths. So a throw-away wrapper
# module in a temp directory requires k8s.io/kubernetes and replaces each staging module with
# its published v0.X.Y release; the list of staging modules is read from that release's own
# go.mod. etcd's server module has the same problem and gets its own wrapper.
#
# Env: K8S_VERSION (v1.34.4), ETCD_VERSION (v3.6.16), IACNAS_K8S_BIN_DIR, KUBEBUILDER_ASSETS,
#      IACNAS_BUILD_NICE (19: the build yields to everything else on the machine).
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
BIN_DIR="${IACNAS_K8S_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/iac-operator/k8s-${K8S_VERSION}/bin}"
NICE="${IACNAS_BUILD_NICE:-19}"

command -v go >/dev/null 2>&1 || {
  echo "build.sh: Go (>= 1.24) is required to build the control plane; install it from go.dev/dl" >&2
  exit 1
}

start=$(date +%s)
mkdir -p "$BIN_DIR"

# envtest binaries, when the user has them, stand in for ours.
have() {
  local name=$1
  if [ -x "$BIN_DIR/$name" ]; then return 0; fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; then
    ln -sf "$KUBEBUILDER_ASSETS/$name" "$BIN_DIR/$name"
    echo "build.sh: using $name from KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
    return 0
  fi
  return 1
}

k8s_missing=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
  have "$b" || k8s_missing+=("$b")
done
etcd_missing=0
have etcd || etcd_missing=1

if [ ${#k8s_missing[@]} -eq 0 ] && [ $etcd_missing -eq 0 ]; then
  echo "build.sh: control plane ${K8S_VERSION} / etcd ${ETCD_VERSION} ready in $BIN_DIR"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/iacnas-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
gorun() { nice -n "$NICE" go "$@"; }

if [ ${#k8s_missing[@]} -gt 0 ]; then
  echo "build.sh: building ${k8s_missing[*]} ${K8S_VERSION} (cold: tens of minutes on 2 cores)"
  gorun mod download -json "k8s.io/kubernetes@${K8S_VERSION}" >"$work/dl.json"
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' "$work/dl.json" | sed -n 1p)
  [ -f "$gomod" ] || { echo "build.sh: go.mod of k8s.io/kubernetes@${K8S_VERSION} not found" >&2; exit 1; }
  staging_v="v0.${K8S_VERSION#v1.}"
  mkdir -p "$work/k8s"
  {
    echo "module iacnas.test/k8sbuild"
    echo
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    # e.g. "	k8s.io/api => ./staging/src/k8s.io/api" -> "replace k8s.io/api => k8s.io/api v0.34.4"
    grep -E '=> \./staging/' "$gomod" | awk -v v="$staging_v" '{ m = ($1 == "replace") ? $2 : $1; print "replace " m " => " m " " v }'
  } >"$work/k8s/go.mod"
  echo "build.sh: $(grep -c '^replace' "$work/k8s/go.mod") staging modules pinned to ${staging_v}"
  pkgs=()
  for b in "${k8s_missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  major=${K8S_VERSION#v}; major=${major%%.*}
  minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=${major} -X $p.gitMinor=${minor}"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (
    cd "$work/k8s"
    gorun get "${pkgs[@]/%/@${K8S_VERSION}}" >/dev/null
    gorun build -mod=mod -trimpath -ldflags "$ld" -o "$BIN_DIR/" "${pkgs[@]}"
  )
fi

if [ $etcd_missing -eq 1 ]; then
  echo "build.sh: building etcd ${ETCD_VERSION}"
  mkdir -p "$work/etcd"
  printf 'module iacnas.test/etcdbuild\n\ngo 1.24\n' >"$work/etcd/go.mod"
  (
    cd "$work/etcd"
    gorun get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null
    gorun build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3
  )
fi

"$BIN_DIR/kube-apiserver" --version
"$BIN_DIR/etcd" --version | sed -n 1p
echo "build.sh: control plane ready in $BIN_DIR after $(( $(date +%s) - start )) s"
