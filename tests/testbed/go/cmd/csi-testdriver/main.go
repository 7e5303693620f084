// Command csi-testdriver serves the CSI driver that Kubernetes' own e2e suite
// uses to exercise the kubernetes-csi sidecars
// (k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service) on a
// unix socket, with flags named like csi-driver-host-path's.
//
// It exists because the module proxy these machines reach refuses every
// version of github.com/kubernetes-csi/csi-driver-host-path. The service keeps
// its volumes in memory: a restart forgets them. The three volumes and three
// snapshots the service seeds itself with are deleted at start, so
// ListVolumes reports exactly what sidecars created.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service"
)

func main() {
	endpoint := flag.String("endpoint", "unix:///tmp/csi.sock", "CSI endpoint, unix://<path> or a bare path")
	driverName := flag.String("drivername", "hostpath.csi.k8s.io", "name reported by GetPluginInfo")
	enableAttach := flag.Bool("enable-attach", false, "advertise PUBLISH_UNPUBLISH_VOLUME")
	enableTopology := flag.Bool("enable-topology", false, "advertise VOLUME_ACCESSIBILITY_CONSTRAINTS")
	attachLimit := flag.Int64("attach-limit", 0, "NodeGetInfo max_volumes_per_node (0 = unlimited)")
	logCalls := flag.Bool("log-calls", true, "log every RPC with its status code")
	nodeID := flag.String("nodeid", "", "node ID for NodeGetInfo; with --enable-topology also the value of the topology.hostpath.csi/node segment this instance reports, as csi-driver-host-path does (default: the service's fixed ID and segment)")
	capacity := flag.Int64("capacity", 0, "total bytes: GetCapacity then reports this minus the sum of existing volumes' sizes (0: the service's fixed answer)")
	nodeMountsOn := flag.Bool("node-mounts", false, "stage and publish with real bind mounts of a per-volume directory under --state-dir (needs privileges; for a driver running on a kubelet node)")
	stateDir := flag.String("state-dir", "/var/lib/csi-testdriver", "where --node-mounts keeps one directory per volume")
	probeFailFile := flag.String("probe-fail-file", "", "while this file exists, Probe answers ready=false (for liveness-probe tests)")
	nodeExpansionRequired := flag.Bool("node-expansion-required", false, "ControllerExpandVolume answers node_expansion_required=true, so kubelet must call NodeExpandVolume")
	maxExpandBytes := flag.Int64("max-expand-bytes", 0, "ControllerExpandVolume above this many bytes fails with OutOfRange, as a cloud's volume size limit (0: no limit)")
	flag.Parse()

	svc := service.New(service.Config{
		DriverName:     *driverName,
		DisableAttach:  !*enableAttach,
		EnableTopology: *enableTopology,
		AttachLimit:    *attachLimit,

		NodeExpansionRequired: *nodeExpansionRequired,
	})
	if err := dropSeededObjects(svc); err != nil {
		log.Fatalf("removing seeded volumes: %v", err)
	}

	path := strings.TrimPrefix(*endpoint, "unix://")
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		log.Fatalf("removing stale socket %s: %v", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		log.Fatalf("listen on %s: %v", path, err)
	}

	interceptors := []grpc.UnaryServerInterceptor{hostpathLike(svc, *nodeID, *capacity), expandLimit(*maxExpandBytes)}
	if *nodeMountsOn {
		interceptors = append(interceptors, nodeMounts(*stateDir))
	}
	if *probeFailFile != "" {
		interceptors = append(interceptors, probeSwitch(*probeFailFile))
	}
	if *logCalls {
		interceptors = append([]grpc.UnaryServerInterceptor{logInterceptor}, interceptors...)
	}
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(interceptors...)}
	srv := grpc.NewServer(opts...)
	csi.RegisterIdentityServer(srv, svc)
	csi.RegisterControllerServer(srv, svc)
	csi.RegisterNodeServer(srv, svc)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.Stop()
	}()
	log.Printf("csi-testdriver %s serving on %s", *driverName, path)
	if err := srv.Serve(lis); err != nil {
		log.Fatalf("serve: %v", err)
	}
}

// dropSeededObjects deletes what service.New pre-creates, through the CSI
// calls themselves, so the driver starts empty.
func dropSeededObjects(svc service.Service) error {
	ctx := context.Background()
	vols, err := svc.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		return err
	}
	for _, e := range vols.GetEntries() {
		if _, err := svc.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: e.GetVolume().GetVolumeId()}); err != nil {
			return fmt.Errorf("volume %s: %w", e.GetVolume().GetVolumeId(), err)
		}
	}
	snaps, err := svc.ListSnapshots(ctx, &csi.ListSnapshotsRequest{})
	if err != nil {
		return err
	}
	for _, e := range snaps.GetEntries() {
		if _, err := svc.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: e.GetSnapshot().GetSnapshotId()}); err != nil {
			return fmt.Errorf("snapshot %s: %w", e.GetSnapshot().GetSnapshotId(), err)
		}
	}
	return nil
}

// expandLimit refuses ControllerExpandVolume beyond max bytes with
// OutOfRange, the answer a driver gives for a size its backend cannot
// provide (0: no limit).
func expandLimit(max int64) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*csi.ControllerExpandVolumeRequest); ok && max > 0 && r.GetCapacityRange().GetRequiredBytes() > max {
			return nil, status.Errorf(codes.OutOfRange, "requested size %d exceeds the maximum volume size %d", r.GetCapacityRange().GetRequiredBytes(), max)
		}
		return handler(ctx, req)
	}
}

// logInterceptor prints one line per RPC: method, status code and duration.
// Requests are not printed, so secrets never reach this log.
func logInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	log.Printf("%s %s %s", info.FullMethod, status.Code(err), time.Since(start).Round(time.Microsecond))
	return resp, err
}

// topologyKey is the segment key csi-driver-host-path reports.
const topologyKey = "topology.hostpath.csi/node"

// hostpathLike adjusts the service's answers where csi-driver-host-path
// differs and tests need it: a per-instance node ID and topology segment,
// and GetCapacity that shrinks as volumes are created.
func hostpathLike(svc service.Service, nodeID string, capacity int64) grpc.UnaryServerInterceptor {
	segment := func() []*csi.Topology {
		return []*csi.Topology{{Segments: map[string]string{topologyKey: nodeID}}}
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if capacity > 0 && info.FullMethod == "/csi.v1.Controller/GetCapacity" {
			vols, err := svc.ListVolumes(ctx, &csi.ListVolumesRequest{})
			if err != nil {
				return nil, err
			}
			used := int64(0)
			for _, e := range vols.GetEntries() {
				used += e.GetVolume().GetCapacityBytes()
			}
			available := capacity - used
			if available < 0 {
				available = 0
			}
			return &csi.GetCapacityResponse{AvailableCapacity: available}, nil
		}
		resp, err := handler(ctx, req)
		if err != nil || nodeID == "" {
			return resp, err
		}
		switch r := resp.(type) {
		case *csi.NodeGetInfoResponse:
			r.NodeId = nodeID
			if r.AccessibleTopology != nil {
				r.AccessibleTopology = segment()[0]
			}
		case *csi.CreateVolumeResponse:
			if r.GetVolume() != nil && len(r.Volume.AccessibleTopology) > 0 {
				r.Volume.AccessibleTopology = segment()
			}
		}
		return resp, nil
	}
}
