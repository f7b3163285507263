package repository_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

const board = "board-e2e"

func rootfs(version string) verify.Custom {
	return verify.Custom{Component: "rootfs", Version: version, Hardware: []string{board}}
}

// device is an updater over two in-memory slots and a fake bootloader.
type device struct {
	t     *testing.T
	repo  *tuftest.Repo
	state string
	boot  *slotstest.FakeBoot
	a, b  *slotstest.MemSlot
	u     *updater.Updater
}

func newDevice(t *testing.T, repo *tuftest.Repo) *device {
	d := &device{t: t, repo: repo, state: t.TempDir(), boot: slotstest.NewFakeBoot("a", "b")}
	d.a = slotstest.NewMemSlot("a", 8<<20, slotstest.WithBoot(d.boot))
	d.b = slotstest.NewMemSlot("b", 8<<20, slotstest.WithBoot(d.boot))
	d.start()
	return d
}

func (d *device) start() {
	d.t.Helper()
	if d.u != nil {
		d.u.Close() // its process ended with the restart
	}
	u, err := updater.New(updater.Config{
		Hardware:    board,
		StateDir:    d.state,
		TrustedRoot: d.repo.Root(),
		MetadataURL: d.repo.MetadataURL(),
		TargetsURL:  d.repo.TargetsURL(),
		Components: []updater.Component{{
			Name: "rootfs", Slots: []slots.Slot{d.a, d.b}, Boot: d.boot, FactoryVersion: "1.0.0",
		}},
		Restart: func(context.Context, string) error { return nil },
	})
	if err != nil {
		d.t.Fatalf("updater.New: %v", err)
	}
	d.u = u
	d.t.Cleanup(func() { u.Close() })
}

// update installs what the repository offers, reboots and confirms.
func (d *device) update() {
	d.t.Helper()
	ctx := context.Background()
	ups, err := d.u.Check(ctx)
	if err != nil {
		d.t.Fatalf("Check: %v", err)
	}
	for _, up := range ups {
		if err := d.u.Install(ctx, up); err != nil {
			d.t.Fatalf("Install %s: %v", up.To, err)
		}
	}
	if err := d.boot.Reboot(); err != nil {
		d.t.Fatalf("reboot: %v", err)
	}
	d.start()
	if err := d.u.Confirm(ctx); err != nil {
		d.t.Fatalf("Confirm: %v", err)
	}
}

func (d *device) installed() string {
	st, err := d.u.Status(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return st.Components[0].Installed
}

func image(seed uint64, n int) []byte {
	b := make([]byte, n)
	rnd := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// next is a release of img: a few changed blocks and an insertion.
func next(img []byte) []byte {
	out := bytes.Clone(img)
	for _, off := range []int{4096, 300_000, 700_000} {
		copy(out[off:], "a small change in this release")
	}
	return append(out[:500_000:500_000], append(bytes.Repeat([]byte("inserted "), 100), out[500_000:]...)...)
}

// TestDeltaEndToEnd publishes deltas with AddPatch and AddChunkIndex and
// has a real updater install them: it takes the patch without fetching any
// of the full image, and for a zstd image without a patch the adaptive
// delta from the chunk store.
func TestDeltaEndToEnd(t *testing.T) {
	ctx := context.Background()
	v1 := image(1, 1<<20)
	v2 := next(v1)
	tests := []struct {
		name      string
		zstd      bool
		patch     bool
		wantStore bool // chunk store requests expected
	}{
		{name: "static patch", patch: true},
		{name: "zstd image from the chunk store", zstd: true, wantStore: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			r := repo.Repository()
			if _, err := r.AddTarget(ctx, "rootfs/1.1.0/x.img", bytes.NewReader(v1), rootfs("1.1.0"), repository.AddOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := r.AddChunkIndex(ctx, "rootfs/1.1.0/x.img", bytes.NewReader(v1), delta.IndexOptions{Chunking: delta.ChunkCDC}, false); err != nil {
				t.Fatal(err)
			}
			repo.Publish()
			d := newDevice(t, repo)
			d.update()
			if got := d.installed(); got != "1.1.0" {
				t.Fatalf("installed %q, want 1.1.0", got)
			}

			p := "rootfs/1.2.0/x.img"
			if tt.zstd {
				p += ".zst"
			}
			if _, err := r.AddTarget(ctx, p, bytes.NewReader(v2), rootfs("1.2.0"), repository.AddOptions{Zstd: tt.zstd, FrameSize: 256 << 10}); err != nil {
				t.Fatal(err)
			}
			if tt.patch {
				// A patch from a release no device runs must not be picked.
				other := image(9, 1<<20)
				for _, base := range [][]byte{other, v1} {
					if _, err := r.AddPatch(ctx, p, bytes.NewReader(base), int64(len(base)), bytes.NewReader(v2)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, err := r.AddChunkIndex(ctx, p, bytes.NewReader(v2), delta.IndexOptions{Chunking: delta.ChunkCDC}, false); err != nil {
				t.Fatal(err)
			}
			repo.Publish()

			var full, store, patches atomic.Int64
			repo.Wrap(func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					switch u := req.URL.Path; {
					case strings.Contains(u, "/"+repository.ChunkStoreDir+"/"):
						store.Add(1)
					case strings.HasSuffix(u, ".patch"):
						patches.Add(1)
					case strings.HasSuffix(u, ".img"), strings.HasSuffix(u, ".img.zst"):
						full.Add(1)
					}
					h.ServeHTTP(w, req)
				})
			})
			d.update()
			if got := d.installed(); got != "1.2.0" {
				t.Fatalf("installed %q, want 1.2.0", got)
			}
			if got := d.a.Bytes()[:len(v2)]; !bytes.Equal(got, v2) {
				t.Fatal("slot a does not hold the new image")
			}
			if got := full.Load(); got != 0 {
				t.Errorf("%d requests for the full image, want 0", got)
			}
			if got, want := patches.Load() > 0, tt.patch; got != want {
				t.Errorf("patch fetched = %v, want %v", got, want)
			}
			if got, want := store.Load() > 0, tt.wantStore; got != want {
				t.Errorf("chunk store used = %v (%d requests), want %v", got, store.Load(), want)
			}
			t.Logf("requests: full image %d, patch %d, chunk store %d", full.Load(), patches.Load(), store.Load())
		})
	}
}
