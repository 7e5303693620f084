package main

import (
	"context"
	"os"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// probeSwitch answers Probe with ready=false while the file at path exists,
// so a test can make a running driver unhealthy (for a liveness probe)
// without killing it.
func probeSwitch(path string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod == "/csi.v1.Identity/Probe" {
			if _, err := os.Stat(path); err == nil {
				return &csi.ProbeResponse{Ready: wrapperspb.Bool(false)}, nil
			}
		}
		return handler(ctx, req)
	}
}
