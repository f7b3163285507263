package relay_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/updater"
)

// Edge devices reach the relay over TLS only when they pin the gateway CA,
// and, when the relay requires them, present a client certificate it
// issued. The relay is their only mirror, so a refused handshake is a
// failed update.
func TestTLSPinnedCAAndClientCerts(t *testing.T) {
	repo := tuftest.New(t)
	publish(repo, "1.1.0", 64<<10)
	r, _ := newRelay(t, repo, nil)
	syncRelay(t, r)
	ca := loadCA(t)
	other := loadCA(t) // another gateway's CA
	certDir := t.TempDir()
	issue := func(ca *relay.CA, name string) (string, string) {
		cert, key, err := ca.IssueClientCert(name, 0)
		if err != nil {
			t.Fatal(err)
		}
		cf, kf := filepath.Join(certDir, name+".pem"), filepath.Join(certDir, name+".key")
		if err := os.WriteFile(cf, cert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kf, key, 0o600); err != nil {
			t.Fatal(err)
		}
		return cf, kf
	}
	goodCert, goodKey := issue(ca, "edge-1")
	rogueCert, rogueKey := issue(other, "edge-2")
	plain := serveTLS(t, r, ca, false)
	mtls := serveTLS(t, r, ca, true)
	for _, tc := range []struct {
		name              string
		url               string
		caFile            string
		certFile, keyFile string
		ok                bool
	}{
		{"pinned CA", plain.URL, ca.CertFile(), "", "", true},
		{"system roots", plain.URL, "", "", "", false},
		{"another gateway's CA", plain.URL, other.CertFile(), "", "", false},
		{"client cert required, given", mtls.URL, ca.CertFile(), goodCert, goodKey, true},
		{"client cert required, none", mtls.URL, ca.CertFile(), "", "", false},
		{"client cert of another CA", mtls.URL, ca.CertFile(), rogueCert, rogueKey, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEdge(t, repo, func(c *updater.Config) {
				c.CAFile, c.CertFile, c.KeyFile = tc.caFile, tc.certFile, tc.keyFile
			}, tc.url)
			v, err := e.update(context.Background())
			if tc.ok && (err != nil || v != "1.1.0") {
				t.Fatalf("update = %q, %v; want 1.1.0", v, err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("update through a refused TLS connection succeeded (%s)", v)
			}
		})
	}
}

// The CA is made once and kept; the server certificate is kept while it
// covers the configured names and issued again when they change.
func TestCAPersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	ca, err := relay.LoadCA(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := ca.ServerCertificate([]string{"gw.local", "192.168.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := relay.LoadCA(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.CertPEM(), again.CertPEM()) {
		t.Fatal("second LoadCA made a new CA")
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	s2, err := again.ServerCertificate([]string{"192.168.1.1", "gw.local"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1.Certificate[0], s2.Certificate[0]) {
		t.Error("same names: server certificate issued again")
	}
	s3, err := again.ServerCertificate([]string{"gw.local", "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(s1.Certificate[0], s3.Certificate[0]) {
		t.Error("names changed: server certificate kept")
	}
}

// One relay process per directory.
func TestDirLocked(t *testing.T) {
	repo := tuftest.New(t)
	_, dir := newRelay(t, repo, nil)
	cfg := relay.Config{Dir: dir, Root: repo.Root(), MetadataURL: repo.MetadataURL()}
	if _, err := relay.New(cfg); !errors.Is(err, relay.ErrLocked) {
		t.Fatalf("second relay on %s: err = %v, want ErrLocked", dir, err)
	}
}
