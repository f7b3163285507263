package oci

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/download"
)

// fetchFrom fetches tr's blob through a Registry made with cfg (Host and
// Repository filled in), into a fresh store holding its first have bytes
// in a partial file; it returns the store, the descriptor, the bytes
// moved and the error.
func fetchFrom(t *testing.T, ctx context.Context, tr *tokenRegistry, cfg RegistryConfig, have int) (*Store, Descriptor, int64, error) {
	t.Helper()
	reg, err := registryFor(t, ctx, tr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := Descriptor{Digest: digestOf(tr.blob), Size: int64(len(tr.blob))}
	if have > 0 {
		if err := os.WriteFile(s.Path(d.Digest)+".part", tr.blob[:have], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.Fetch(ctx, reg, d)
	return s, d, n, err
}

// registryFor serves tr on 127.0.0.1 and makes a Registry of it with cfg
// (Host and Repository filled in).
func registryFor(t *testing.T, ctx context.Context, tr *tokenRegistry, cfg RegistryConfig) (*Registry, error) {
	t.Helper()
	srv := httptest.NewServer(tr)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	cfg.Host, cfg.Repository = u.Host, "apps/gw"
	return NewRegistry(ctx, cfg)
}

// TestBlobTransferRules: blob transfers from a registry obey the rules of
// the one download client (internal/download) like every other transfer
// of the device: a blob that stalls mid-body on every attempt ends in
// download.ErrStalled once the retries are spent, and its partial file
// stays for a resume; Pause is asked before the requests and between
// chunks, and its error aborts the pull; a 503 with Retry-After is waited
// for and retried. The stall case failed before blobs went through the
// download client (the pull ended in a stall error of its own, and
// RegistryConfig had no Pause or RetryMax).
func TestBlobTransferRules(t *testing.T) {
	blob := []byte(strings.Repeat("layer bytes ", 40000)) // 480 kB: several chunks
	errMetered := errors.New("link metered")
	metered := &tokenRegistry{blob: blob}
	tests := []struct {
		name    string
		tr      *tokenRegistry
		cfg     func(pauses *atomic.Int32) RegistryConfig
		wantErr error
		present bool
	}{
		{name: "stall mid-body", tr: &tokenRegistry{blob: blob, stallAt: 64 << 10},
			cfg: func(*atomic.Int32) RegistryConfig {
				return RegistryConfig{StallTimeout: 200 * time.Millisecond, RetryMax: 1}
			},
			wantErr: download.ErrStalled},
		{name: "pause aborts", tr: metered,
			cfg: func(pauses *atomic.Int32) RegistryConfig {
				var inBlob atomic.Int32 // Pauses since the blob was asked for
				return RegistryConfig{Pause: func(context.Context) error {
					pauses.Add(1)
					if metered.blobRequests() > 0 && inBlob.Add(1) > 1 {
						return errMetered // between chunks
					}
					return nil
				}}
			},
			wantErr: errMetered},
		{name: "pause lets through", tr: &tokenRegistry{blob: blob},
			cfg: func(pauses *atomic.Int32) RegistryConfig {
				return RegistryConfig{Pause: func(context.Context) error { pauses.Add(1); return nil }}
			},
			present: true},
		{name: "503 Retry-After", tr: &tokenRegistry{blob: blob, busy: 2},
			cfg:     func(*atomic.Int32) RegistryConfig { return RegistryConfig{} },
			present: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pauses atomic.Int32
			s, d, _, err := fetchFrom(t, context.Background(), tt.tr, tt.cfg(&pauses), 0)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("fetch: %v, want %v", err, tt.wantErr)
			}
			if s.Has(d) != tt.present {
				t.Errorf("blob present %v, want %v", s.Has(d), tt.present)
			}
			if tt.wantErr != nil {
				if fi, err := os.Stat(s.Path(d.Digest) + ".part"); err != nil || fi.Size() == 0 {
					t.Errorf("the partial blob is not kept for a resume: %v", err)
				}
			}
			if tt.cfg(new(atomic.Int32)).Pause != nil && pauses.Load() < 3 {
				t.Errorf("Pause asked %d times, want before the request and between chunks", pauses.Load())
			}
		})
	}
}

// TestBlobRateLimit: RateLimit caps a blob transfer. At 16 KiB/s a
// 480 kB blob needs half a minute, so a pull given two seconds ends at its
// deadline with at most the limiter's burst and two seconds' worth of
// bytes delivered to the partial blob: a bound the limiter guarantees however slow the machine
// (nothing here times the transfer). Without the limit, the same pull
// completes.
func TestBlobRateLimit(t *testing.T) {
	blob := []byte(strings.Repeat("layer bytes ", 40000))
	const limit = 16 << 10
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, d, _, err := fetchFrom(t, ctx, &tokenRegistry{blob: blob}, RegistryConfig{RateLimit: limit}, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("at %d B/s: %v, want the deadline to end it", limit, err)
	}
	fi, err := os.Stat(s.Path(d.Digest) + ".part")
	if err != nil {
		t.Fatal(err)
	}
	if most := int64(3 * limit); fi.Size() > most {
		t.Errorf("at %d B/s, %d bytes delivered in 2 s, want at most %d", limit, fi.Size(), most)
	}
	s, d, _, err = fetchFrom(t, context.Background(), &tokenRegistry{blob: blob}, RegistryConfig{}, 0)
	if err != nil || !s.Has(d) {
		t.Fatalf("unlimited: %v (present %v)", err, s.Has(d))
	}
}
