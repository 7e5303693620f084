// Command csi-registrar registers a CSI driver with the kubelet through the
// kubelet's plugin-registration socket directory. It stands in for
// node-driver-registrar in the test bed until the workspace's own registrar
// exists: that module's tagged versions cannot be fetched through the module
// proxy these machines use.
//
// It asks the driver for its name (GetPluginInfo), serves the kubelet's
// Registration service on <registration-dir>/<name>-reg.sock, and answers
// GetInfo with the driver's socket path as the kubelet sees it. When the
// kubelet reports a failed registration it exits non-zero, so the kubelet
// restarts the container and the registration is tried again.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registration "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type registrar struct {
	registration.UnimplementedRegistrationServer
	name     string
	endpoint string
}

func (r *registrar) GetInfo(ctx context.Context, _ *registration.InfoRequest) (*registration.PluginInfo, error) {
	log.Printf("kubelet asked for plugin info: %s at %s", r.name, r.endpoint)
	return &registration.PluginInfo{
		Type:              registration.CSIPlugin,
		Name:              r.name,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registrar) NotifyRegistrationStatus(ctx context.Context, s *registration.RegistrationStatus) (*registration.RegistrationStatusResponse, error) {
	if !s.PluginRegistered {
		log.Printf("kubelet refused the registration: %s", s.Error)
		// Exit after answering so the kubelet sees the reply.
		go func() { time.Sleep(100 * time.Millisecond); os.Exit(1) }()
	} else {
		log.Printf("kubelet registered %s", r.name)
	}
	return &registration.RegistrationStatusResponse{}, nil
}

// driverName asks the driver for its name, retrying until the socket answers
// or the deadline passes.
func driverName(address string, wait time.Duration) string {
	target := "unix://" + strings.TrimPrefix(address, "unix://")
	deadline := time.Now().Add(wait)
	for {
		name, err := func() (string, error) {
			conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return "", err
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			info, err := csi.NewIdentityClient(conn).GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
			if err != nil {
				return "", err
			}
			return info.GetName(), nil
		}()
		if err == nil && name != "" {
			return name
		}
		if time.Now().After(deadline) {
			log.Fatalf("GetPluginInfo on %s: %v", address, err)
		}
		log.Printf("waiting for the driver at %s: %v", address, err)
		time.Sleep(time.Second)
	}
}

func main() {
	csiAddress := flag.String("csi-address", "/csi/csi.sock", "driver socket inside this container")
	kubeletPath := flag.String("kubelet-registration-path", "", "driver socket as the kubelet sees it on the host")
	regDir := flag.String("plugin-registration-path", "/registration", "the kubelet's plugins_registry directory inside this container")
	wait := flag.Duration("driver-wait", 2*time.Minute, "how long to wait for the driver socket")
	flag.Parse()
	if *kubeletPath == "" {
		log.Fatal("--kubelet-registration-path is required")
	}

	name := driverName(*csiAddress, *wait)
	sock := filepath.Join(*regDir, name+"-reg.sock")
	if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
		log.Fatalf("removing stale socket %s: %v", sock, err)
	}
	lis, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatalf("listen on %s: %v", sock, err)
	}
	srv := grpc.NewServer()
	registration.RegisterRegistrationServer(srv, &registrar{name: name, endpoint: *kubeletPath})

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.Stop()
		// The kubelet deregisters a plugin when its socket goes away.
		_ = os.Remove(sock)
		os.Exit(0)
	}()
	log.Printf("registering %s (driver at %s) on %s", name, *kubeletPath, sock)
	if err := srv.Serve(lis); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
