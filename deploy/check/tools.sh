#!/usr/bin/env bash
# tools.sh — the deploy checks' tools, built once into the cache:
#   helm (v3, from the Go module proxy, stamped with its version so it knows which
#   Kubernetes to assume) and kubeconform (same), plus promtool through prometheus.sh.
# Prints NAME=PATH lines for the callers.
#
# Environment: OPSWATCH_CACHE (default <repo>/.cache), HELM_VERSION, KUBECONFORM_VERSION.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE="${OPSWATCH_CACHE:-$REPO/.cache}"
BIN="$CACHE/tools/bin"
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
KUBE_MINOR=33  # the Kubernetes version helm assumes (1.33), as the schemas checked against

log() { echo "tools.sh: $*" >&2; }

build() { # build NAME PACKAGE@VERSION [LDFLAGS]
  local name="$1" pkg="$2" ldflags="${3:-}" started
  [[ -x "$BIN/$name" ]] && return
  command -v go >/dev/null || { log "go is needed to build $name"; exit 1; }
  log "building $name from $pkg (the first time only; minutes on two cores)"
  started=$(date +%s)
  GOBIN="$BIN" CGO_ENABLED=0 GOFLAGS="-buildvcs=false" \
    go install -trimpath -ldflags "$ldflags" "$pkg" >&2
  log "$name built in $(($(date +%s) - started)) s"
}

mkdir -p "$BIN"
helm_flags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$KUBE_MINOR"
done
build helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$helm_flags"
build kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
bash "$REPO/deploy/local/prometheus.sh" promtool --version >/dev/null 2>&1
echo "helm=$BIN/helm"
echo "kubeconform=$BIN/kubeconform"
echo "promtool=$REPO/deploy/local/prometheus.sh promtool"
echo "kube_version=1.$KUBE_MINOR.0"
