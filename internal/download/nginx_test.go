package download

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/ci"
)

// The nginx that .ci/services/nginx.sh starts.
const (
	nginxAddr     = "127.0.0.1:18443"
	nginxMTLSAddr = "127.0.0.1:18444"
)

func nginxDir() string {
	if d := os.Getenv("SWITCHBACK_NGINX_DIR"); d != "" {
		return d
	}
	return "/tmp/switchback-nginx"
}

// needNginx returns the service directory, or skips (fails under CI=true)
// when nginx is not running.
func needNginx(t *testing.T) string {
	t.Helper()
	dir := nginxDir()
	_, errCA := os.Stat(filepath.Join(dir, "ca.pem"))
	conn, errDial := net.DialTimeout("tcp", nginxAddr, 2*time.Second)
	if conn != nil {
		conn.Close()
	}
	if err := errors.Join(errCA, errDial); err != nil {
		msg := "nginx service not running (start it with .ci/services/nginx.sh): " + err.Error()
		ci.Skipf(t, "%v", msg)
	}
	return dir
}

// hashingSink hashes what it holds.
type hashingSink struct {
	h          hash.Hash
	n          int64
	failAt     int64
	validators []string
}

func newHashingSink() *hashingSink { return &hashingSink{h: sha256.New()} }

func (s *hashingSink) Write(p []byte) (int, error) {
	if s.failAt > 0 && s.n+int64(len(p)) > s.failAt {
		k := s.failAt - s.n
		s.h.Write(p[:k])
		s.n += k
		return int(k), errors.New("simulated crash")
	}
	s.n += int64(len(p))
	return s.h.Write(p)
}
func (s *hashingSink) Restart() error { s.h.Reset(); s.n = 0; return nil }
func (s *hashingSink) SetValidator(v string) error {
	s.validators = append(s.validators, v)
	return nil
}

func TestNginx(t *testing.T) {
	dir := needNginx(t)
	wantHex, err := os.ReadFile(filepath.Join(dir, "blob.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "www", "blob.bin"))
	if err != nil {
		t.Fatal(err)
	}
	L := fi.Size()
	blob := "https://" + nginxAddr + "/blob.bin"
	tlsCfg := TLSConfig{CAFile: filepath.Join(dir, "ca.pem")}
	ctx := context.Background()
	checkHash := func(t *testing.T, s *hashingSink) {
		t.Helper()
		if s.n != L || hex.EncodeToString(s.h.Sum(nil)) != strings.TrimSpace(string(wantHex)) {
			t.Errorf("sink: got %d bytes sha256 %x, want %d bytes %s", s.n, s.h.Sum(nil), L, wantHex)
		}
	}

	t.Run("whole file", func(t *testing.T) {
		c, _ := newTestClient(t, Config{TLS: tlsCfg})
		s := newHashingSink()
		res, err := c.Fetch(ctx, Request{URLs: []string{blob}, Length: L}, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkHash(t, s)
		if res.Transferred != L || res.Requests != 1 {
			t.Errorf("got %d bytes in %d requests, want %d in 1", res.Transferred, res.Requests, L)
		}
	})

	t.Run("interrupted then resumed with If-Range", func(t *testing.T) {
		c, _ := newTestClient(t, Config{TLS: tlsCfg})
		s := newHashingSink()
		s.failAt = 3<<20 + 12345
		res, err := c.Fetch(ctx, Request{URLs: []string{blob}, Length: L}, s, nil)
		if !errors.Is(err, ErrSink) {
			t.Fatalf("got %v, want the sink's failure", err)
		}
		if res.Delivered != s.failAt || len(s.validators) != 1 || res.Validator != s.validators[0] {
			t.Fatalf("after the crash: Delivered %d, validators %q, Result.Validator %q", res.Delivered, s.validators, res.Validator)
		}
		if _, v := parseValidator(res.Validator); !strings.HasPrefix(v, `"`) {
			t.Errorf("validator %q: want nginx's strong ETag", res.Validator)
		}
		s.failAt = 0
		res2, err := c.Fetch(ctx, Request{URLs: []string{blob}, Offset: res.Delivered, Length: L, Validator: res.Validator}, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkHash(t, s)
		if res2.Transferred != L-res.Delivered || res2.Restarts != 0 {
			t.Errorf("resume: transferred %d with %d restarts, want %d and 0", res2.Transferred, res2.Restarts, L-res.Delivered)
		}
	})

	t.Run("Last-Modified as validator", func(t *testing.T) {
		c, _ := newTestClient(t, Config{TLS: tlsCfg})
		s := newHashingSink()
		s.failAt = 1 << 20
		c.Fetch(ctx, Request{URLs: []string{blob}, Length: L}, s, nil)
		s.failAt = 0
		lm := fi.ModTime().UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")
		res, err := c.Fetch(ctx, Request{URLs: []string{blob}, Offset: 1 << 20, Length: L, Validator: lm}, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkHash(t, s)
		if res.Restarts != 0 || res.Transferred != L-1<<20 {
			t.Errorf("got %d restarts, %d bytes; want 0 and %d", res.Restarts, res.Transferred, L-1<<20)
		}
	})

	t.Run("stale validator restarts from 0", func(t *testing.T) {
		c, _ := newTestClient(t, Config{TLS: tlsCfg})
		s := newHashingSink()
		s.failAt = 1 << 20
		c.Fetch(ctx, Request{URLs: []string{blob}, Length: L}, s, nil)
		s.failAt = 0
		res, err := c.Fetch(ctx, Request{URLs: []string{blob}, Offset: 1 << 20, Length: L, Validator: blob + ` "0-0"`}, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkHash(t, s)
		if res.Restarts != 1 || res.Transferred != L {
			t.Errorf("got %d restarts, %d bytes; want 1 and %d", res.Restarts, res.Transferred, L)
		}
	})

	t.Run("nothing missing: 416", func(t *testing.T) {
		c, _ := newTestClient(t, Config{TLS: tlsCfg})
		res, err := c.Fetch(ctx, Request{URLs: []string{blob}, Offset: L, Length: L}, newHashingSink(), nil)
		if err != nil || res.Transferred != 0 || res.Requests != 1 {
			t.Errorf("got %+v, %v; want nothing transferred in one request", res, err)
		}
	})

	t.Run("wrong expected length", func(t *testing.T) {
		c, _ := newTestClient(t, Config{TLS: tlsCfg})
		s := newHashingSink()
		if _, err := c.Fetch(ctx, Request{URLs: []string{blob}, Length: L - 1}, s, nil); !errors.Is(err, ErrLength) || s.n != 0 {
			t.Errorf("got %v with %d bytes delivered, want ErrLength and none", err, s.n)
		}
	})

	t.Run("mutual TLS", func(t *testing.T) {
		mblob := "https://" + nginxMTLSAddr + "/blob.bin"
		c, _ := newTestClient(t, Config{TLS: TLSConfig{CAFile: tlsCfg.CAFile, CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client.key")}})
		s := newHashingSink()
		if _, err := c.Fetch(ctx, Request{URLs: []string{mblob}, Length: L}, s, nil); err != nil {
			t.Fatal(err)
		}
		checkHash(t, s)
		c2, _ := newTestClient(t, Config{TLS: tlsCfg, RetryMax: -1})
		if _, err := c2.Fetch(ctx, Request{URLs: []string{mblob}, Length: L}, newHashingSink(), nil); err == nil {
			t.Error("without a client certificate: got nil error, want nginx's 400")
		}
	})

	t.Run("metadata", func(t *testing.T) {
		c, _ := newTestClient(t, Config{TLS: tlsCfg})
		f := c.Fetcher(ctx, "https://"+nginxAddr)
		var he *metadata.ErrDownloadHTTP
		if _, err := f.DownloadFile("https://"+nginxAddr+"/2.root.json", 1000, 0); !errors.As(err, &he) || he.StatusCode != 404 {
			t.Errorf("missing root: got %v, want ErrDownloadHTTP 404", err)
		}
		if _, err := f.DownloadFile(blob, 1000, 0); !errors.Is(err, &metadata.ErrDownloadLengthMismatch{}) {
			t.Errorf("oversized: got %v, want ErrDownloadLengthMismatch", err)
		}
		_, _, v, err := c.GetConditional(ctx, blob, L, "")
		if err != nil || v == "" {
			t.Fatalf("GetConditional: %v, validator %q", err, v)
		}
		body, nm, _, err := c.GetConditional(ctx, blob, L, v)
		if err != nil || !nm || body != nil {
			t.Errorf("unchanged: got %d bytes, notModified %v, %v; want 304", len(body), nm, err)
		}
	})
}
