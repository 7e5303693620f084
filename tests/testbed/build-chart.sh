#!/usr/bin/env bash
# Builds the tools of the Helm chart's tests into the test bed's binary
# directory (the one `build.sh core` prints, building the core set first if
# needed):
#
#   helm            helm v4 from its Go module (tests/testbed/go-helm/, a
#                   module of its own: helm pins k8s.io modules differently
#                   from k8s.io/kubernetes)
#   kube-scheduler  from the pinned k8s.io/kubernetes (tests/testbed/go/):
#                   the chart's Deployment and DaemonSet pods need scheduling
#
# A separate script and not a set of build.sh: build.sh hashes its own text
# into the key of the binary directory, so any edit there moves every cached
# binary to a new key (a cold rebuild of the control plane and the node).
# Here each binary has its own stamp (.helm.key: Go version, go-helm's go.mod
# and go.sum, this script; .kube-scheduler.key: this script, the directory's
# key already covers k8s.io/kubernetes), so a change rebuilds only it.
#
#   tests/testbed/build-chart.sh
#
# Prints the binary directory as its last line of standard output.
# Environment: CSI_TESTBED_CACHE (default ~/.cache/csi-testbed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELM_MOD="$HERE/go-helm"
CACHE=${CSI_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/csi-testbed}

BIN=$(bash "$HERE/build.sh" core | tail -n 1)

export GOMODCACHE="$CACHE/gomod" GOCACHE="$CACHE/gobuild"
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-mod=readonly -modcacherw -trimpath -pgo=off"

stamp_of() {
	case "$1" in
	helm) { go env GOVERSION; cat "$HELM_MOD/go.mod" "$HELM_MOD/go.sum" "$HERE/build-chart.sh"; } | sha256sum | cut -c1-16 ;;
	kube-scheduler) sha256sum <"$HERE/build-chart.sh" | cut -c1-16 ;;
	esac
}

want=(helm kube-scheduler)
find_missing() {
	missing=()
	for b in "${want[@]}"; do
		if [[ ! -x "$BIN/$b" || "$(cat "$BIN/.$b.key" 2>/dev/null)" != "$(stamp_of "$b")" ]]; then
			missing+=("$b")
		fi
	done
}
find_missing
if ((${#missing[@]} == 0)); then
	echo "chart tools: cached in $BIN" >&2
	echo "$BIN"
	exit 0
fi

# A developer and CI may share this machine and cache; whoever waited here
# may find the work done.
exec 9>"$CACHE/.lock"
flock 9
find_missing

total_start=$(date +%s)
for b in "${missing[@]}"; do
	start=$(date +%s)
	echo "chart tools: building $b ..." >&2
	case "$b" in
	helm)
		(cd "$HELM_MOD" && go mod download && go build \
			-ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$(go list -m -f '{{.Version}}' helm.sh/helm/v4)" \
			-o "$BIN/$b.tmp" helm.sh/helm/v4/cmd/helm) >&2
		;;
	kube-scheduler)
		(cd "$HERE/go" && KV=$(go list -m -f '{{.Version}}' k8s.io/kubernetes) &&
			go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KV" \
				-o "$BIN/$b.tmp" k8s.io/kubernetes/cmd/kube-scheduler) >&2
		;;
	esac
	mv "$BIN/$b.tmp" "$BIN/$b"
	stamp_of "$b" >"$BIN/.$b.key"
	echo "chart tools: built $b in $(($(date +%s) - start))s" >&2
done
echo "chart tools: build took $(($(date +%s) - total_start))s" >&2
echo "$BIN"
