#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests in test/realk8s/ run against:
# kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 from Debian bookworm's
# `kubernetes` source package (1.20.5+really1.20.2, vendor/ included), with Debian's Go 1.19; and
# installs Debian's etcd-server. Nothing comes from outside Debian's archive.
#
# Once per machine: about 20 minutes on 2 cores, then every step is found finished and skipped
# (a second run takes a second). Needs root (or sudo) for apt-get; Debian bookworm.
#
#   REALK8S_BUILD  build folder, outside the clone (default /var/cache/kube-telemetry-agent/realk8s);
#                  the binaries land in $REALK8S_BUILD/bin, where test/realk8s/control_plane.ts looks.
#
# Layout of $REALK8S_BUILD: dl/ (the source package), src/ (unpacked, patches applied),
# gopath/src/k8s.io/kubernetes -> src, gocache/, openapi-gen + oagen/ (generated OpenAPI), bin/.
set -euo pipefail
B=${REALK8S_BUILD:-/var/cache/kube-telemetry-agent/realk8s}
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)
say() { printf '== %s realk8s build: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi

all_built() {
  for c in "${BINARIES[@]}"; do [ -x "$B/bin/$c" ] || return 1; done
  command -v etcd >/dev/null 2>&1
}
if all_built; then
  say "already built: $("$B/bin/kube-apiserver" --version) in $B/bin, $(etcd --version | head -1)"
  exit 0
fi

"${SUDO[@]}" mkdir -p "$B"
[ -w "$B" ] || "${SUDO[@]}" chown "$(id -u):$(id -g)" "$B"
cd "$B"

# 1. Debian packages: etcd for the tests, the Go toolchain and the two newer vendored libraries for the build.
packages=(etcd-server golang-go dpkg-dev quilt rsync golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ! -d "$B/src" ] && ! apt-get source --print-uris -qq kubernetes >/dev/null 2>&1; then
  # no deb-src entry yet: add one for the archive the machine already uses
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || { echo "realk8s build: no Debian archive found in the apt sources" >&2; exit 1; }
  say "adding a deb-src entry for $uri bookworm"
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" |
    "${SUDO[@]}" tee /etc/apt/sources.list.d/kube-telemetry-agent-src.sources >/dev/null
  "${SUDO[@]}" apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The source package, unpacked with Debian's patches applied (dpkg-source does that for 3.0 (quilt)).
if [ ! -d "$B/src" ]; then
  say "apt-get source kubernetes"
  rm -rf "$B/dl" "$B/src.partial"
  mkdir -p "$B/dl"
  (cd "$B/dl" && apt-get source -qq --download-only kubernetes)
  dpkg-source -x "$(ls "$B"/dl/kubernetes_*.dsc | head -1)" "$B/src.partial" >/dev/null
  mv "$B/src.partial" "$B/src"
fi

# 3. GOPATH mode (module mode does not build this tree with Go 1.19).
GOPATH_DIR="$B/gopath"
K="$GOPATH_DIR/src/k8s.io/kubernetes"
mkdir -p "$GOPATH_DIR/src/k8s.io"
[ -e "$K" ] || ln -s "$B/src" "$K"

# 4. The vendored reflect2 1.0.1 crashes on Go >= 1.18: use Debian's 1.0.2 and the json-iterator that goes with it.
for lib in github.com/modern-go/reflect2 github.com/json-iterator/go; do
  dest="$B/src/vendor/$lib"
  if [ ! -f "$dest/.from-debian" ]; then
    say "vendor/$lib <- Debian's /usr/share/gocode/src/$lib"
    rsync -a --delete --exclude='*_test.go' "/usr/share/gocode/src/$lib/" "$dest/"
    touch "$dest/.from-debian"
  fi
done

export GOPATH="$GOPATH_DIR" GO111MODULE=off CGO_ENABLED=0 GOFLAGS= GOCACHE="$B/gocache"
cd "$K"

# 5. kube-apiserver needs the generated OpenAPI definitions, which the source package does not ship.
OPENAPI=pkg/generated/openapi/zz_generated.openapi.go
if [ ! -s "$OPENAPI" ]; then
  say "building openapi-gen"
  nice -n 10 go build -o "$B/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  say "generating $OPENAPI"
  # the API groups kube-apiserver serves (the same set hack/update-codegen.sh feeds openapi-gen)
  dirs=()
  for d in api apimachinery apiextensions-apiserver kube-aggregator metrics kube-proxy kubelet kube-scheduler \
           kube-controller-manager cloud-provider component-base controller-manager; do
    dirs+=("staging/src/k8s.io/$d")
  done
  inputs=$(grep -rl --include=doc.go '+k8s:openapi-gen=true' "${dirs[@]}" pkg/apis 2>/dev/null |
    xargs -n1 dirname | sort -u |
    sed -e 's#^staging/src/#k8s.io/kubernetes/vendor/#' -e 's#^pkg/#k8s.io/kubernetes/pkg/#' | paste -sd, -)
  inputs="$inputs,k8s.io/apimachinery/pkg/apis/meta/v1,k8s.io/apimachinery/pkg/runtime,k8s.io/apimachinery/pkg/version,k8s.io/apimachinery/pkg/api/resource,k8s.io/apimachinery/pkg/util/intstr"
  rm -rf "$B/oagen"
  nice -n 10 "$B/openapi-gen" --input-dirs "$inputs" \
    --output-base "$B/oagen" --output-package k8s.io/kubernetes/pkg/generated/openapi \
    --output-file-base zz_generated.openapi -h hack/boilerplate/boilerplate.generatego.txt \
    --report-filename "$B/openapi-violations.txt"
  cp "$B/oagen/k8s.io/kubernetes/pkg/generated/openapi/zz_generated.openapi.go" "$OPENAPI"
fi

# 6. Static binaries that report v1.20.2 (the version stamp the release build would set).
LDFLAGS="-s -w"
for kv in gitVersion=v1.20.2 gitMajor=1 gitMinor=20 gitCommit=faecb196815e248d3ecfb03c680a4507229c2a56 gitTreeState=clean buildDate=2021-01-13T13:20:00Z; do
  for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    LDFLAGS="$LDFLAGS -X $pkg.${kv%%=*}=${kv#*=}"
  done
done
mkdir -p "$B/bin"
for c in "${BINARIES[@]}"; do
  if [ ! -x "$B/bin/$c" ]; then
    say "go build $c"
    nice -n 10 go build -trimpath -ldflags "$LDFLAGS" -o "$B/bin/$c.partial" "./cmd/$c"
    mv "$B/bin/$c.partial" "$B/bin/$c"
  fi
done
say "done: $("$B/bin/kube-apiserver" --version) in $B/bin"
