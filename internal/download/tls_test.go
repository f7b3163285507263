package download

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// testCA issues certificates for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "switchback test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for cn: a server certificate for
// 127.0.0.1 or a client certificate.
func (ca *testCA) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFile(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// tlsServer starts a TLS server with a certificate of ca that records the
// client certificate's common name.
func tlsServer(t *testing.T, ca *testCA, content []byte, clientAuth bool, maxVersion uint16) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var cns []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if len(r.TLS.PeerCertificates) > 0 {
			cns = append(cns, r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		mu.Unlock()
		http.ServeContent(w, r, "image.bin", time.Time{}, bytes.NewReader(content))
	}))
	certPEM, keyPEM := ca.issue(t, "127.0.0.1", true)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MaxVersion: maxVersion}
	if clientAuth {
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		srv.TLS.ClientCAs = pool
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), cns...)
	}
}

func TestTLS(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, ca.pem, time.Now())
	otherFile := filepath.Join(dir, "other.pem")
	writeFile(t, otherFile, other.pem, time.Now())
	content := randomBytes(12, 200_000)
	strangerCert, strangerKey := other.issue(t, "stranger", false)
	strangerCertFile, strangerKeyFile := filepath.Join(dir, "stranger.pem"), filepath.Join(dir, "stranger-key.pem")
	writeFile(t, strangerCertFile, strangerCert, time.Now())
	writeFile(t, strangerKeyFile, strangerKey, time.Now())

	// A certificate error is a configuration to fix, on either side: one
	// request, no retry (the server's refusal of the client's certificate
	// was retried, with backoff, before).
	tests := []struct {
		name       string
		cfg        TLSConfig
		maxVer     uint16
		clientAuth bool
		wantErr    bool
	}{
		{name: "custom CA", cfg: TLSConfig{CAFile: caFile}},
		{name: "server requires a client certificate, none given", cfg: TLSConfig{CAFile: caFile}, clientAuth: true, wantErr: true},
		{name: "server refuses a client certificate of another CA", clientAuth: true, wantErr: true,
			cfg: TLSConfig{CAFile: caFile, CertFile: strangerCertFile, KeyFile: strangerKeyFile}},
		{name: "system roots do not know the test CA", wantErr: true},
		{name: "another CA", cfg: TLSConfig{CAFile: otherFile}, wantErr: true},
		{name: "TLS 1.1 server refused", cfg: TLSConfig{CAFile: caFile}, maxVer: tls.VersionTLS11, wantErr: true},
		{name: "TLS 1.3 minimum against a 1.2 server", cfg: TLSConfig{CAFile: caFile, MinVersion: tls.VersionTLS13}, maxVer: tls.VersionTLS12, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := tlsServer(t, ca, content, tt.clientAuth, tt.maxVer)
			c, _ := newTestClient(t, Config{TLS: tt.cfg, RetryMax: 3})
			sink := &memSink{}
			res, err := c.Fetch(context.Background(), Request{URLs: []string{srv.URL + "/image.bin"}, Length: int64(len(content))}, sink, nil)
			if tt.wantErr {
				if err == nil {
					t.Fatal("got nil error, want a TLS failure")
				}
				if tt.maxVer == 0 && res.Requests != 1 {
					t.Errorf("certificate errors retried: got %d requests, want 1", res.Requests)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sink.buf.Bytes(), content) {
				t.Error("sink differs")
			}
		})
	}
}

func TestMutualTLSReload(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	writeFile(t, caFile, ca.pem, time.Now())
	t0 := time.Now().Add(-time.Minute)
	certA, keyA := ca.issue(t, "device-a", false)
	writeFile(t, certFile, certA, t0)
	writeFile(t, keyFile, keyA, t0)
	content := randomBytes(13, 10_000)
	srv, cns := tlsServer(t, ca, content, true, 0)

	c, _ := newTestClient(t, Config{TLS: TLSConfig{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}})
	fetch := func() error {
		c.hc.CloseIdleConnections() // a new handshake each time
		sink := &memSink{}
		_, err := c.Fetch(context.Background(), Request{URLs: []string{srv.URL + "/image.bin"}, Length: int64(len(content))}, sink, nil)
		if err == nil && !bytes.Equal(sink.buf.Bytes(), content) {
			err = errors.New("sink differs")
		}
		return err
	}
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	// Renewed certificate: used at the next handshake.
	certB, keyB := ca.issue(t, "device-b", false)
	writeFile(t, certFile, certB, t0.Add(10*time.Second))
	writeFile(t, keyFile, keyB, t0.Add(10*time.Second))
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	// A broken renewal keeps the previous pair.
	writeFile(t, keyFile, []byte("not a key"), t0.Add(20*time.Second))
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	if got, want := cns(), []string{"device-a", "device-b", "device-b"}; !slices.Equal(got, want) {
		t.Errorf("client certificates seen: got %q, want %q", got, want)
	}

	// Without a client certificate the server refuses.
	c2, _ := newTestClient(t, Config{TLS: TLSConfig{CAFile: caFile}, RetryMax: -1})
	if _, err := c2.Fetch(context.Background(), Request{URLs: []string{srv.URL + "/image.bin"}, Length: int64(len(content))}, &memSink{}, nil); err == nil {
		t.Error("no client certificate: got nil error, want a handshake failure")
	}
}

func TestProxy(t *testing.T) {
	content := randomBytes(14, 30_000)
	origin := newTestServer(t, content, nil)
	var mu sync.Mutex
	var seen []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.String())
		mu.Unlock()
		// A forward proxy receives the absolute URL; pass it on.
		origin.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	pu, _ := url.Parse(proxy.URL)
	c, _ := newTestClient(t, Config{Proxy: http.ProxyURL(pu)})
	sink := &memSink{}
	if _, err := c.Fetch(context.Background(), Request{URLs: []string{origin.url()}, Length: int64(len(content))}, sink, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != origin.url() {
		t.Errorf("proxy saw %q, want [%q]", seen, origin.url())
	}
}

func TestNewConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	writeFile(t, bad, []byte("no certificates here"), time.Now())
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "zero", cfg: Config{}},
		{name: "HTTPClient with TLS", cfg: Config{HTTPClient: &http.Client{}, TLS: TLSConfig{CAFile: bad}}, wantErr: true},
		{name: "HTTPClient with Proxy", cfg: Config{HTTPClient: &http.Client{}, Proxy: http.ProxyFromEnvironment}, wantErr: true},
		{name: "cert without key", cfg: Config{TLS: TLSConfig{CertFile: bad}}, wantErr: true},
		{name: "TLS 1.0", cfg: Config{TLS: TLSConfig{MinVersion: tls.VersionTLS10}}, wantErr: true},
		{name: "CA file without certificates", cfg: Config{TLS: TLSConfig{CAFile: bad}}, wantErr: true},
		{name: "missing CA file", cfg: Config{TLS: TLSConfig{CAFile: filepath.Join(dir, "nope")}}, wantErr: true},
		{name: "missing client cert", cfg: Config{TLS: TLSConfig{CertFile: bad, KeyFile: bad}}, wantErr: true},
		{name: "negative rate", cfg: Config{RateLimit: -1}, wantErr: true},
		{name: "min above max", cfg: Config{RetryWaitMin: time.Second, RetryWaitMax: time.Millisecond}, wantErr: true},
		{name: "negative stall", cfg: Config{StallTimeout: -1}, wantErr: true},
		{name: "negative low-speed time", cfg: Config{LowSpeedTime: -1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New: got %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if c.hc == http.DefaultClient || c.hc.Transport == http.DefaultTransport || c.hc.Transport == nil {
				t.Error("New uses the default client or transport")
			}
			tr := c.hc.Transport.(*http.Transport)
			if tr.TLSClientConfig.MinVersion < tls.VersionTLS12 || !tr.DisableCompression || tr.Proxy == nil {
				t.Errorf("transport: MinVersion %#x, DisableCompression %v, Proxy set %v", tr.TLSClientConfig.MinVersion, tr.DisableCompression, tr.Proxy != nil)
			}
		})
	}
}
