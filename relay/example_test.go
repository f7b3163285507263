package relay_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// serveCloud stands in for the cloud update server: it publishes one
// rootfs release for sensor-hub-v2 in a signed repository in work and
// serves it on 127.0.0.1. It returns the root.json devices trust, the
// metadata and targets URLs, and the function that stops the server.
func serveCloud(work string) (root []byte, metadataURL, targetsURL string, stop func()) {
	ctx := context.Background()
	repo, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(work, "repo")},
		repository.InitOptions{KeysDir: filepath.Join(work, "keys")})
	if err != nil {
		log.Fatal(err)
	}
	_, err = repo.AddTarget(ctx, "rootfs/1.1.0/rootfs.img", strings.NewReader("root file system 1.1.0"),
		verify.Custom{Component: "rootfs", Version: "1.1.0", Hardware: []string{"sensor-hub-v2"}}, repository.AddOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if err := repo.Publish(ctx); err != nil {
		log.Fatal(err)
	}
	if root, err = os.ReadFile(filepath.Join(repo.MetadataDir(), "1.root.json")); err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(repo.Dir())))
	return root, srv.URL + "/metadata/", srv.URL + "/targets/", srv.Close
}

// A gateway runs the relay for the edge devices behind it, over HTTPS with
// its own CA, and keeps it refreshed from the cloud repository. Here the
// cloud is a local test repository and the gateway listens on 127.0.0.1.
func Example() {
	work, err := os.MkdirTemp("", "switchback-relay")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	root, metadataURL, targetsURL, stopCloud := serveCloud(work) // root: /etc/switchback/root.json
	defer stopCloud()

	ctx, cancel := context.WithCancel(context.Background())
	r, err := relay.New(relay.Config{
		Dir:         filepath.Join(work, "relay"), // /var/lib/switchback-relay
		Root:        root,
		MetadataURL: metadataURL,                            // "https://updates.example.com/metadata/"
		TargetsURL:  targetsURL,                             // "https://updates.example.com/targets/"
		Hardware:    []string{"sensor-hub-v2", "camera-v1"}, // prefetched
	})
	if err != nil {
		log.Fatal(err)
	}
	ca, err := relay.LoadCA(filepath.Join(work, "relay", "tls"), nil)
	if err != nil {
		log.Fatal(err)
	}
	tc, err := ca.ServerTLS([]string{"127.0.0.1"}, false) // "gateway.local", "192.168.7.1"
	if err != nil {
		log.Fatal(err)
	}
	// A first refresh before serving; Run then keeps the relay fresh.
	if err := r.Refresh(ctx); err != nil {
		log.Fatal(err)
	}
	if err := r.Prefetch(ctx); err != nil {
		log.Fatal(err)
	}
	running := make(chan error, 1)
	go func() { running <- r.Run(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // ":8443"
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: r, TLSConfig: tc, ReadHeaderTimeout: 30 * time.Second}
	go srv.ServeTLS(ln, "", "")

	// An edge device that trusts the gateway CA fetches through the relay.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	device := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	res, err := device.Get("https://" + ln.Addr().String() + relay.MetadataPrefix + "timestamp.json")
	if err != nil {
		log.Fatal(err)
	}
	res.Body.Close()
	fmt.Println("timestamp.json from the relay:", res.Status)
	fmt.Println("release prefetched:", r.Stats().UplinkTargetBytes > 0)

	srv.Close()
	cancel()
	fmt.Println("Run returned:", <-running)
	r.Close()
	// Output:
	// timestamp.json from the relay: 200 OK
	// release prefetched: true
	// Run returned: context canceled
}

// Each edge device runs an ordinary updater: the relay first, the cloud
// next, the gateway CA pinned. Here the relay and the cloud run on
// 127.0.0.1 (startGateway), the device's slots are in memory.
func Example_edgeDevice() {
	work, err := os.MkdirTemp("", "switchback-edge")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)
	root, cloudMetadata, cloudTargets, stopCloud := serveCloud(work)
	defer stopCloud()
	gateway, caFile, stopGateway := startGateway(work, root, cloudMetadata, cloudTargets)
	defer stopGateway()

	boot := slotstest.NewFakeBoot("a", "b")
	cfg := updater.Config{
		Hardware:        "sensor-hub-v2",
		MetadataURL:     gateway + relay.MetadataPrefix, // "https://gateway.local:8443"
		TargetsURL:      gateway + relay.TargetsPrefix,
		MetadataMirrors: []string{cloudMetadata}, // "https://updates.example.com/metadata/"
		TargetsMirrors:  []string{cloudTargets},
		CAFile:          caFile, // relay ca > /etc/switchback/gateway-ca.pem
		StateDir:        filepath.Join(work, "state"),
		TrustedRoot:     root,
		Components: []updater.Component{{Name: "rootfs", Boot: boot, FactoryVersion: "1.0.0", Slots: []slots.Slot{
			slotstest.NewMemSlot("a", 1<<20, slotstest.WithBoot(boot)),
			slotstest.NewMemSlot("b", 1<<20, slotstest.WithBoot(boot)),
		}}},
		Restart: func(context.Context, string) error { return nil }, // a device reboots
	}
	u, err := updater.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer u.Close()
	ctx := context.Background()
	ups, err := u.Check(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, up := range ups {
		if err := u.Install(ctx, up); err != nil {
			log.Fatal(err)
		}
		fmt.Println("installed", up.Component, up.From, "->", up.To)
	}
	// Output:
	// installed rootfs 1.0.0 -> 1.1.0
}

// startGateway runs a relay of the cloud repository on 127.0.0.1 over
// HTTPS, as Example does. It returns the relay's base URL, the file
// holding its CA certificate, and the function that stops it.
func startGateway(work string, root []byte, metadataURL, targetsURL string) (url, caFile string, stop func()) {
	r, err := relay.New(relay.Config{Dir: filepath.Join(work, "relay"), Root: root,
		MetadataURL: metadataURL, TargetsURL: targetsURL, Hardware: []string{"sensor-hub-v2"}})
	if err != nil {
		log.Fatal(err)
	}
	ca, err := relay.LoadCA(filepath.Join(work, "relay", "tls"), nil)
	if err != nil {
		log.Fatal(err)
	}
	tc, err := ca.ServerTLS([]string{"127.0.0.1"}, false)
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Refresh(context.Background()); err != nil { // Run in a real gateway
		log.Fatal(err)
	}
	caFile = filepath.Join(work, "gateway-ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(r)
	srv.TLS = tc
	srv.StartTLS()
	return srv.URL, caFile, func() {
		srv.Close()
		r.Close()
	}
}

// The gateway CA issues a client certificate for an edge device, when the
// relay requires them (ServerTLS with requireClientCerts).
func ExampleCA_IssueClientCert() {
	dir, err := os.MkdirTemp("", "relay-ca")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca, err := relay.LoadCA(filepath.Join(dir, "tls"), nil)
	if err != nil {
		log.Fatal(err)
	}
	certPEM, _, err := ca.IssueClientCert("sensor-07", 0)
	if err != nil {
		log.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM())
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	fmt.Println(cert.Subject.CommonName, "verifies against the gateway CA:", err == nil)
	// Output: sensor-07 verifies against the gateway CA: true
}
