#!/usr/bin/env bash
# Builds the test bed's Go binaries into a cache outside the clone, keyed by
# the pins (Go version, go.mod and go.sum of both tool modules, this script);
# the small commands of our own (csi-testdriver, csi-registrar, pause) are
# rebuilt alone when their source changes.
# A second run with the same key costs nothing.
#
#   tests/testbed/build.sh [core|upstream|node|all]     (default: core)
#
#   core      etcd, kube-apiserver, kube-controller-manager, kubectl, csi-testdriver
#   upstream  the upstream Go sidecars, for comparison runs only
#   node      a real node: kubelet, containerd, containerd-shim-runc-v2, ctr,
#             the stand-in csi-registrar and a static pause (plus csi-testdriver)
#   all       all of the above
#
# Prints the binary directory as its last line of standard output.
# Environment: CSI_TESTBED_CACHE (default ~/.cache/csi-testbed).
set -euo pipefail

SET=${1:-core}
case "$SET" in core | upstream | node | all) ;; *)
	echo "usage: $0 [core|upstream|node|all]" >&2
	exit 2
	;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MOD="$HERE/go"
# containerd v2 and k8s.io/kubernetes disagree on shared k8s.io modules, so
# containerd has a module of its own.
NODE_MOD="$HERE/go-node"
CACHE=${CSI_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/csi-testbed}
mkdir -p "$CACHE"

command -v go >/dev/null || {
	echo "build.sh: no 'go' on PATH; the test bed needs Go >= 1.26" >&2
	exit 1
}

export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gobuild"
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=readonly -modcacherw -trimpath -pgo=off"

KEY=$({
	go env GOVERSION
	cat "$MOD/go.mod" "$MOD/go.sum" "$NODE_MOD/go.mod" "$NODE_MOD/go.sum" "$HERE/build.sh"
} | sha256sum | cut -c1-16)
BIN="$CACHE/bin/$KEY"
# Our own small commands change more often than the pins: each has its own
# stamp, so editing one relinks only itself.
own=(csi-testdriver csi-registrar pause)
src_key() { find "$MOD/cmd/$1" -type f -name '*.go' -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16; }
for b in "${own[@]}"; do
	if [[ -x "$BIN/$b" && "$(cat "$BIN/.$b.key" 2>/dev/null)" != "$(src_key "$b")" ]]; then
		rm -f "$BIN/$b"
	fi
done

core=(etcd kube-apiserver kube-controller-manager kubectl csi-testdriver)
upstream=(csi-provisioner csi-attacher csi-resizer csi-snapshotter snapshot-controller)
node=(kubelet containerd containerd-shim-runc-v2 ctr csi-registrar pause csi-testdriver)
case "$SET" in
core) want=("${core[@]}") ;;
upstream) want=("${upstream[@]}") ;;
node) want=("${node[@]}") ;;
all) want=("${core[@]}" "${upstream[@]}" "${node[@]:0:6}") ;;
esac

missing=()
for b in "${want[@]}"; do [[ -x "$BIN/$b" ]] || missing+=("$b"); done
if ((${#missing[@]} == 0)); then
	echo "test bed ($SET): cached in $BIN" >&2
	echo "$BIN"
	exit 0
fi

# A developer and CI may share this machine and cache.
exec 9>"$CACHE/.lock"
flock 9

cd "$MOD"
echo "test bed ($SET): probing pins" >&2
for m in k8s.io/kubernetes go.etcd.io/etcd/server/v3; do
	go list -m "$m" >/dev/null || {
		echo "build.sh: module $m is not available from the module proxy (see go.mod)" >&2
		exit 1
	}
done
go mod download >&2
if [[ " ${want[*]} " == *" containerd "* ]]; then
	(cd "$NODE_MOD" && go list -m github.com/containerd/containerd/v2 >/dev/null && go mod download) >&2 || {
		echo "build.sh: github.com/containerd/containerd/v2 is not available from the module proxy (see go-node/go.mod)" >&2
		exit 1
	}
fi

KV=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
KMIN=$(echo "$KV" | cut -d. -f2)
KLDF=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	KLDF+=" -X $p.gitVersion=$KV -X $p.gitMajor=1 -X $p.gitMinor=$KMIN -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
ver() { go list -m -f '{{.Version}}' "$1"; }
node_ver() { (cd "$NODE_MOD" && go list -m -f '{{.Version}}' "$1"); }

pkg_of() {
	case "$1" in
	etcd) echo go.etcd.io/etcd/server/v3 ;;
	kube-apiserver | kube-controller-manager | kubectl | kubelet) echo "k8s.io/kubernetes/cmd/$1" ;;
	csi-testdriver | csi-registrar | pause) echo "./cmd/$1" ;;
	containerd | containerd-shim-runc-v2 | ctr) echo "github.com/containerd/containerd/v2/cmd/$1" ;;
	csi-provisioner) echo github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner ;;
	csi-attacher) echo github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher ;;
	csi-resizer) echo github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer ;;
	csi-snapshotter | snapshot-controller) echo "github.com/kubernetes-csi/external-snapshotter/v8/cmd/$1" ;;
	esac
}
ldflags_of() {
	case "$1" in
	kube-apiserver | kube-controller-manager | kubectl | kubelet) echo "-s -w $KLDF" ;;
	containerd | containerd-shim-runc-v2 | ctr) echo "-s -w -X github.com/containerd/containerd/v2/version.Version=$(node_ver github.com/containerd/containerd/v2)" ;;
	csi-provisioner) echo "-s -w -X main.version=$(ver github.com/kubernetes-csi/external-provisioner/v6)" ;;
	csi-attacher) echo "-s -w -X main.version=$(ver github.com/kubernetes-csi/external-attacher/v4)" ;;
	csi-resizer) echo "-s -w -X main.version=$(ver github.com/kubernetes-csi/external-resizer/v2)" ;;
	csi-snapshotter | snapshot-controller) echo "-s -w -X main.version=$(ver github.com/kubernetes-csi/external-snapshotter/v8)" ;;
	*) echo "-s -w" ;;
	esac
}

mkdir -p "$BIN"
total_start=$(date +%s)
for b in "${want[@]}"; do
	[[ -x "$BIN/$b" ]] && continue
	start=$(date +%s)
	echo "test bed: building $b ..." >&2
	dir=$MOD
	case "$b" in containerd | containerd-shim-runc-v2 | ctr) dir=$NODE_MOD ;; esac
	(cd "$dir" && go build -ldflags "$(ldflags_of "$b")" -o "$BIN/$b.tmp" "$(pkg_of "$b")") >&2
	mv "$BIN/$b.tmp" "$BIN/$b"
	case "$b" in csi-testdriver | csi-registrar | pause) src_key "$b" >"$BIN/.$b.key" ;; esac
	echo "test bed: built $b in $(($(date +%s) - start))s" >&2
done
echo "test bed ($SET): build took $(($(date +%s) - total_start))s" >&2

# Keep the two newest keys.
ls -1dt "$CACHE"/bin/*/ 2>/dev/null | tail -n +3 | xargs -r rm -rf
echo "$BIN"
