package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// `switchback relay` serves the verified metadata and targets over HTTPS
// with a certificate of its CA (`relay ca`), and issues client
// certificates (`relay issue-cert`).
func TestRelayCommand(t *testing.T) {
	repo := tuftest.New(t)
	img := []byte("edge image 1.1.0")
	repo.AddTarget("rootfs/1.1.0/rootfs.img", img, verify.Custom{Component: "rootfs", Version: "1.1.0", Hardware: []string{"edge-a"}})
	repo.Publish()
	dir := t.TempDir()
	root := filepath.Join(dir, "root.json")
	if err := os.WriteFile(root, repo.Root(), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "relay")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"relay", "-dir", state, "-root", root, "-metadata-url", repo.MetadataURL(), "-targets-url", repo.TargetsURL(),
			"-hardware", "edge-a", "-listen", "127.0.0.1:0", "-names", "127.0.0.1,localhost"}, &out, &errb)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("relay exit %d: %s", code, errb.String())
		}
	}()
	addr := waitFor(t, &out, regexp.MustCompile(`https://(\S+)/metadata/`))

	var caPEM bytes.Buffer
	if code := run(context.Background(), []string{"relay", "ca", "-dir", state}, &caPEM, io.Discard); code != 0 {
		t.Fatalf("relay ca: exit %d", code)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM.Bytes()) {
		t.Fatalf("relay ca printed no certificate: %q", caPEM.String())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	url := "https://" + addr + "/targets/" + repo.Target("rootfs/1.1.0/rootfs.img").File
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET over the pinned CA: %v", err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			if !bytes.Equal(b, img) {
				t.Fatalf("target bytes %q, want %q", b, img)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("target still %d: %s", res.StatusCode, errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	prefix := filepath.Join(dir, "edge-1")
	var issued bytes.Buffer
	if code := run(context.Background(), []string{"relay", "issue-cert", "-dir", state, "-name", "edge-1", "-out", prefix}, &issued, &issued); code != 0 {
		t.Fatalf("issue-cert: exit %d: %s", code, issued.String())
	}
	certPEM, err := os.ReadFile(prefix + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify against the gateway CA: %v", err)
	}
	if fi, err := os.Stat(prefix + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, want mode 0600", err)
	}
}

func waitFor(t *testing.T, out *syncBuffer, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %v in %q", re, out.String())
	return ""
}

func TestRelayConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "relay.json")
	if err := os.WriteFile(file, []byte(`{"root": "/r.json", "metadata_url": "https://up/metadata/", "names": ["gw"], "hardware": ["a"], "refresh_interval": "1m"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want func(relayConfig) bool
		err  string
	}{
		{"file", []string{"-relay-config", file}, func(c relayConfig) bool {
			return c.Root == "/r.json" && c.Listen == ":8443" && c.Dir == defaultRelayDir && time.Duration(c.RefreshInterval) == time.Minute
		}, ""},
		{"flags override the file", []string{"-hardware", "b,c", "--relay-config=" + file, "-listen", ":9"}, func(c relayConfig) bool {
			return strings.Join(c.Hardware, ",") == "b,c" && c.Listen == ":9" && c.MetadataURL == "https://up/metadata/"
		}, ""},
		{"no names without insecure-http", []string{"-root", "r", "-metadata-url", "u"}, nil, "names"},
		{"insecure-http", []string{"-root", "r", "-metadata-url", "u", "-insecure-http"}, func(c relayConfig) bool { return c.InsecureHTTP }, ""},
		{"client certs need TLS", []string{"-root", "r", "-metadata-url", "u", "-insecure-http", "-client-certs"}, nil, "client_certs"},
		{"root required", []string{"-names", "gw"}, nil, "root"},
		{"stray argument", []string{"-relay-config", file, "extra"}, nil, "unexpected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := relayConfigFrom(tc.args, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one about %q", err, tc.err)
				}
				return
			}
			if err != nil || !tc.want(c) {
				t.Fatalf("config %+v, err %v", c, err)
			}
		})
	}
}

func FuzzParseRelayConfig(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"dir": "/d", "hardware": ["a", "b"], "cache_bytes": 10, "refresh_interval": "5m"}`,
		`{"unknown": 1}`, `{"cache_bytes": -1}`, `{} {}`, `{"refresh_interval": 5}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseRelayConfig(b)
		if err != nil {
			return
		}
		if c.CacheBytes < 0 || c.RefreshInterval < 0 {
			t.Fatalf("accepted negative values: %+v", c)
		}
	})
}

// TestRelayHelp: `relay -h` prints the help and every flag on stdout and
// exits 0; an unknown flag is a usage error (2). Before the merge with the
// new CLI, -h exited 2.
func TestRelayHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"relay", "-h"}, 0, "-cache-bytes"},
		{[]string{"relay", "ca", "-h"}, 0, "issue-cert"},
		{[]string{"relay", "-bogus"}, 2, ""},
	} {
		var out, errb bytes.Buffer
		if got := run(context.Background(), tc.args, &out, &errb); got != tc.code {
			t.Errorf("%v: exit %d, want %d (%s)", tc.args, got, tc.code, errb.String())
		}
		if !strings.Contains(out.String(), tc.out) {
			t.Errorf("%v: stdout lacks %q:\n%s", tc.args, tc.out, out.String())
		}
	}
}
