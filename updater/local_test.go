package updater

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

// TestLocalRepository updates from a repository directory (a USB stick)
// through file:// URLs, with the same verification as over HTTP.
func TestLocalRepository(t *testing.T) {
	repo := tuftest.New(t)
	img := image("1.1.0", 5<<20)
	repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	repo.Publish()
	d := newDevice(t, repo)
	d.cfg = func(c *Config) {
		c.MetadataURL = "file://" + filepath.Join(repo.Dir(), "metadata") + "/"
		c.TargetsURL = "file://" + filepath.Join(repo.Dir(), "targets") + "/"
	}
	d.start()
	if err := d.update(); err != nil {
		t.Fatalf("update from a directory: %v", err)
	}
	if !bytes.Equal(d.b.Bytes(), img) {
		t.Fatal("slot b does not hold the image")
	}
	d.confirmed("1.1.0")
}

func TestInstallFile(t *testing.T) {
	img := image("1.1.0", 70000)
	other := custom("1.1.0")
	other.Hardware = []string{"another-board"}
	tests := []struct {
		name    string
		file    []byte
		custom  verify.Custom
		wantErr error
	}{
		{"signed image", img, custom("1.1.0"), nil},
		{"tampered image", append(bytes.Clone(img[:len(img)-1]), 'x'), custom("1.1.0"), verify.ErrVerification},
		{"unknown file", []byte("not a release"), custom("1.1.0"), verify.ErrVerification},
		{"wrong hardware", img, other, verify.ErrIncompatible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			repo.AddTarget("rootfs/1.1.0.img", img, tt.custom)
			repo.Publish()
			d := newDevice(t, repo)
			path := filepath.Join(t.TempDir(), "usb-image")
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			err := d.u.InstallFile(context.Background(), path)
			bs, _ := d.boot.Status(context.Background())
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("InstallFile: %v, want %v", err, tt.wantErr)
				}
				if bs.Trial != "" {
					t.Fatalf("slot armed after a refused file: %+v", bs)
				}
				return
			}
			if err != nil {
				t.Fatalf("InstallFile: %v", err)
			}
			if bs.Trial != "b" || !bytes.Equal(d.b.Bytes(), img) {
				t.Fatalf("after InstallFile: %+v; slot b holds the image: %v", bs, bytes.Equal(d.b.Bytes(), img))
			}
		})
	}
}

// TestInstallFileMatch finds the target of a local file without reading it
// twice: by its length, by the hash in its published name, by its first
// block, and only when all those agree by hashing it.
func TestInstallFileMatch(t *testing.T) {
	const n = 200000
	a, b := image("1.1.0", n), image("1.2.0", n)
	// c shares a's first block and length, and differs after it.
	c := bytes.Clone(a)
	c[n-1] ^= 0xff
	tests := []struct {
		name    string
		file    []byte
		publish map[string][]byte // target version → image
		named   string            // target whose published name the file keeps
		want    string            // version installed; "" refused
	}{
		{"renamed file, unique length", a, map[string][]byte{"1.1.0": a}, "", "1.1.0"},
		{"two targets of equal length, the older", a, map[string][]byte{"1.1.0": a, "1.2.0": b}, "", "1.1.0"},
		{"two targets of equal length, the newer", b, map[string][]byte{"1.1.0": a, "1.2.0": b}, "", "1.2.0"},
		{"equal first blocks, hashed once", c, map[string][]byte{"1.1.0": a, "1.2.0": c}, "", "1.2.0"},
		{"equal first blocks, published name", c, map[string][]byte{"1.1.0": a, "1.2.0": c}, "1.2.0", "1.2.0"},
		{"length of no target", a[:n-1], map[string][]byte{"1.1.0": a, "1.2.0": b}, "", ""},
		{"length of a target, bytes of none", bytes.Repeat([]byte{7}, n), map[string][]byte{"1.1.0": a, "1.2.0": b}, "", ""},
		{"equal first blocks, bytes of none", append(bytes.Clone(a[:n-1]), 1), map[string][]byte{"1.1.0": a, "1.2.0": c}, "", ""},
		{"published name, other bytes", append(bytes.Clone(b[:n-1]), 1), map[string][]byte{"1.1.0": a, "1.2.0": b}, "1.2.0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tuftest.New(t)
			for v, img := range tt.publish {
				repo.AddTarget("rootfs/"+v+".img", img, custom(v))
			}
			repo.Publish()
			d := newDevice(t, repo)
			name := "usb-image"
			if tt.named != "" {
				name = filepath.Base(repo.Target("rootfs/" + tt.named + ".img").File)
			}
			path := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			// A refused file never counts against a release.
			for range 3 {
				err := d.u.InstallFile(context.Background(), path)
				if tt.want == "" {
					if !errors.Is(err, verify.ErrVerification) {
						t.Fatalf("InstallFile: %v, want %v", err, verify.ErrVerification)
					}
					continue
				}
				if err != nil {
					t.Fatalf("InstallFile: %v", err)
				}
				break
			}
			bs, _ := d.boot.Status(context.Background())
			if tt.want == "" {
				if bs.Trial != "" {
					t.Fatalf("slot armed after a refused file: %+v", bs)
				}
				if bl := d.u.st.blocklist(); len(bl) != 0 || len(d.u.st.p.Failures) != 0 {
					t.Fatalf("a refused local file counted against a release: blocklist %v, failures %v", bl, d.u.st.p.Failures)
				}
				return
			}
			if bs.Trial != "b" || !bytes.Equal(d.b.Bytes(), tt.file) {
				t.Fatalf("after InstallFile: %+v; slot b holds the file: %v", bs, bytes.Equal(d.b.Bytes(), tt.file))
			}
			if got := d.u.st.component("rootfs").Pending.Version; got != tt.want {
				t.Errorf("armed version %s, want %s", got, tt.want)
			}
		})
	}
}

// TestMatchLocalReads shows which matches read the file: none when its
// length or published name decide (the path does not even exist), the
// first block when that decides.
func TestMatchLocalReads(t *testing.T) {
	const n = 100000
	a, b := image("1.1.0", n), image("1.2.0", n)
	repo := tuftest.New(t)
	repo.AddTarget("rootfs/1.1.0.img", a, custom("1.1.0"))
	repo.AddTarget("rootfs/1.2.0.img", b, custom("1.2.0"))
	repo.AddTarget("rootfs/small.img", a[:10], custom("0.9.0"))
	repo.Publish()
	d := newDevice(t, repo)
	ts, err := d.u.tuf.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "gone")
	tests := []struct {
		name string
		path string
		size int64
		want string // sha256 of the match
	}{
		{"unique length", missing, 10, repo.Target("rootfs/small.img").SHA256},
		{"published name", filepath.Join(missing, repo.Target("rootfs/1.2.0.img").File), n, repo.Target("rootfs/1.2.0.img").SHA256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.u.matchLocal(context.Background(), tt.path, tt.size, ts.Targets)
			if err != nil {
				t.Fatalf("matchLocal: %v", err)
			}
			if got[0].SHA256() != tt.want {
				t.Errorf("matched %s, want %s", got[0].SHA256(), tt.want)
			}
		})
	}
	// The first block decides: a file whose end is not a's still matches
	// a (the install's verification refuses it, in the same pass).
	path := filepath.Join(t.TempDir(), "usb")
	if err := os.WriteFile(path, append(bytes.Clone(a[:n-1]), 0), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := d.u.matchLocal(context.Background(), path, n, ts.Targets)
	if err != nil || got[0].SHA256() != repo.Target("rootfs/1.1.0.img").SHA256 {
		t.Fatalf("matchLocal by first block: %v, %v", got, err)
	}
}
