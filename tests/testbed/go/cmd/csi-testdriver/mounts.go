package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// nodeMounts makes the node calls do what a real driver does to the paths
// the kubelet passes: NodeStageVolume bind-mounts a per-volume directory
// under stateDir onto the staging path, NodePublishVolume bind-mounts the
// staging path onto the target path, and the unpublish/unstage calls
// unmount them again before the service forgets them. The service alone
// only creates the target directory, so a pod would see a plain directory
// and the test could not tell whether mount propagation works.
func nodeMounts(stateDir string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		switch r := req.(type) {
		case *csi.NodeUnpublishVolumeRequest:
			if err := unmountIfMounted(r.GetTargetPath()); err != nil {
				return nil, status.Errorf(codes.Internal, "unmount %s: %v", r.GetTargetPath(), err)
			}
		case *csi.NodeUnstageVolumeRequest:
			if err := unmountIfMounted(r.GetStagingTargetPath()); err != nil {
				return nil, status.Errorf(codes.Internal, "unmount %s: %v", r.GetStagingTargetPath(), err)
			}
		}
		resp, err := handler(ctx, req)
		if err != nil {
			return resp, err
		}
		switch r := req.(type) {
		case *csi.NodeStageVolumeRequest:
			src := filepath.Join(stateDir, strings.ReplaceAll(r.GetVolumeId(), "/", "_"))
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, status.Errorf(codes.Internal, "volume directory: %v", err)
			}
			if err := bindMount(src, r.GetStagingTargetPath()); err != nil {
				return nil, status.Errorf(codes.Internal, "stage %s: %v", r.GetVolumeId(), err)
			}
		case *csi.NodePublishVolumeRequest:
			src := r.GetStagingTargetPath()
			if src == "" {
				src = filepath.Join(stateDir, strings.ReplaceAll(r.GetVolumeId(), "/", "_"))
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, status.Errorf(codes.Internal, "volume directory: %v", err)
				}
			}
			if err := bindMount(src, r.GetTargetPath()); err != nil {
				return nil, status.Errorf(codes.Internal, "publish %s: %v", r.GetVolumeId(), err)
			}
		}
		return resp, nil
	}
}

// bindMount mounts src on target unless target already is a mount point,
// which makes a repeated call a no-op as CSI's idempotency asks.
func bindMount(src, target string) error {
	mounted, err := isMountPoint(target)
	if err != nil || mounted {
		return err
	}
	if err := syscall.Mount(src, target, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	return nil
}

func unmountIfMounted(target string) error {
	mounted, err := isMountPoint(target)
	if err != nil || !mounted {
		return err
	}
	return syscall.Unmount(target, 0)
}

// isMountPoint looks the path up in this process's mount table; a bind mount
// from the same file system has the same device number, so stat cannot tell.
func isMountPoint(path string) (bool, error) {
	path = filepath.Clean(path)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == path {
			return true, nil
		}
	}
	return false, s.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
