package relay_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/updater"
)

// A gateway runs the relay for the edge devices behind it, over HTTPS with
// its own CA, and keeps it refreshed from the cloud repository.
func Example() {
	ctx := context.Background()
	root, err := os.ReadFile("/etc/switchback/root.json")
	if err != nil {
		log.Fatal(err)
	}
	r, err := relay.New(relay.Config{
		Dir:         "/var/lib/switchback-relay",
		Root:        root,
		MetadataURL: "https://updates.example.com/metadata/",
		TargetsURL:  "https://updates.example.com/targets/",
		Hardware:    []string{"sensor-hub-v2", "camera-v1"}, // prefetched
	})
	if err != nil {
		log.Fatal(err)
	}
	ca, err := relay.LoadCA("/var/lib/switchback-relay/tls", nil)
	if err != nil {
		log.Fatal(err)
	}
	tc, err := ca.ServerTLS([]string{"gateway.local", "192.168.7.1"}, false)
	if err != nil {
		log.Fatal(err)
	}
	go r.Run(ctx)
	srv := &http.Server{Addr: ":8443", Handler: r, TLSConfig: tc, ReadHeaderTimeout: 30 * time.Second}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}

// Each edge device runs an ordinary updater: the relay first, the cloud
// next, the gateway CA pinned.
func Example_edgeDevice() {
	cfg := updater.Config{
		Hardware:        "sensor-hub-v2",
		MetadataURL:     "https://gateway.local:8443" + relay.MetadataPrefix,
		TargetsURL:      "https://gateway.local:8443" + relay.TargetsPrefix,
		MetadataMirrors: []string{"https://updates.example.com/metadata/"},
		TargetsMirrors:  []string{"https://updates.example.com/targets/"},
		CAFile:          "/etc/switchback/gateway-ca.pem", // relay ca > gateway-ca.pem
		// StateDir, TrustedRoot, Components... as for any device.
	}
	_ = cfg
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
