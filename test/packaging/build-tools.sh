#!/usr/bin/env bash
# Builds the packaging tools the test/packaging suites run — helm, promtool and
# prometheus — from their Go modules, and caches the binaries outside the repository.
#
# Why from source: CI machines and this project's dev machines reach package
# registries only (the Go module proxy among them), not release download pages.
#
# Usage: test/packaging/build-tools.sh [--print-dir]
#   IACNAS_TOOLS_DIR   cache directory (default ~/.cache/iac-operator/tools-<versions>)
#   HELM_VERSION       helm.sh/helm/v3 module version (default below)
#   PROMETHEUS_VERSION github.com/prometheus/prometheus module version (v0.3XX.Y is Prometheus 3.XX.Y)
#   GO                 go binary (default: go on PATH, else /usr/local/go/bin/go)
# Reuses what the cache already holds: a second run does nothing. Prints the
# directory at the end; --print-dir prints it and exits without building.
set -euo pipefail

helm_version="${HELM_VERSION:-v3.22.0}"
prometheus_version="${PROMETHEUS_VERSION:-v0.316.0}"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/iac-operator"
dir="${IACNAS_TOOLS_DIR:-$cache_root/tools-helm-$helm_version-prom-$prometheus_version}"

if [ "${1:-}" = "--print-dir" ]; then echo "$dir"; exit 0; fi

go_bin="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
if [ ! -x "$go_bin" ]; then
  echo "build-tools: Go >= 1.24 is needed to build helm and promtool (set GO=/path/to/go)" >&2
  exit 1
fi
mkdir -p "$dir"
log() { echo "build-tools: $*" >&2; }

# Builds one main package of a module inside a throwaway wrapper module: `go install
# pkg@version` refuses modules whose go.mod has replace directives (Prometheus has).
build() { # <binary name> <module> <version> <package> [go build flags...]
  local name="$1" module="$2" version="$3" pkg="$4"; shift 4
  if [ -x "$dir/$name" ]; then log "$name cached in $dir"; return 0; fi
  local work; work="$(mktemp -d)"
  local start; start=$(date +%s)
  log "building $name from $module@$version (cold builds take minutes)"
  (
    cd "$work"
    "$go_bin" mod init iacnas.local/tools-$name >/dev/null 2>&1
    # Take the module's own go.mod (with its replace directives) as the wrapper's, so
    # the dependency versions are exactly the ones the release was tested with.
    "$go_bin" mod download -json "$module@$version" > mod.json
    local src; src="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' mod.json)"
    [ -n "$src" ] || { log "could not download $module@$version"; exit 1; }
    cp -r "$src/." ./src && chmod -R u+w ./src
    cd ./src
    local ldflags="-s -w"
    case "$name" in
      helm)
        # As helm's Makefile: the version, and the Kubernetes version `helm template`
        # and `helm lint` assume (client-go v0.X.Y is Kubernetes 1.X).
        local kminor; kminor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' go.mod | sed -n 1p)"
        ldflags="$ldflags -X helm.sh/helm/v3/internal/version.version=$version"
        for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
          ldflags="$ldflags -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kminor"
        done
        ;;
      promtool | prometheus)
        # Prometheus v3.X.Y is module version v0.3XX.Y.
        local v="${version#v0.}"; v="3.$(( ${v%%.*} - 300 )).${v#*.}"
        ldflags="$ldflags -X github.com/prometheus/common/version.Version=$v -X github.com/prometheus/common/version.Branch=release"
        ;;
    esac
    GOWORK=off GOFLAGS=-mod=mod "$go_bin" build -trimpath -ldflags "$ldflags" "$@" -o "$dir/$name.tmp" "./$pkg"
  )
  mv "$dir/$name.tmp" "$dir/$name"
  rm -rf "$work"
  log "$name built in $(( $(date +%s) - start )) s"
}

build helm helm.sh/helm/v3 "$helm_version" cmd/helm
# promtool and prometheus share one module download and most of the build cache.
# Prometheus's remove_all_sd tag leaves out the cloud service-discovery plugins, which
# a loopback scrape with static targets never uses and which double the build time.
build promtool github.com/prometheus/prometheus "$prometheus_version" cmd/promtool -tags remove_all_sd
build prometheus github.com/prometheus/prometheus "$prometheus_version" cmd/prometheus -tags remove_all_sd

echo "$dir"
