package tuftest

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// device is go-tuf's reference client with persistent trusted metadata, as
// a device keeps it between checks.
type device struct {
	t       *testing.T
	root    []byte
	metaDir string
	metaURL string
	tgtURL  string
}

func newDevice(t *testing.T, r *Repo) *device {
	return &device{t: t, root: r.Root(), metaDir: t.TempDir(), metaURL: r.MetadataURL(), tgtURL: r.TargetsURL()}
}

// check refreshes like a device: newest trusted root from disk, else the
// embedded one.
func (d *device) check() (*updater.Updater, error) {
	d.t.Helper()
	root := d.root
	if b, err := os.ReadFile(filepath.Join(d.metaDir, "root.json")); err == nil {
		root = b
	}
	cfg, err := config.New(d.metaURL, root)
	if err != nil {
		d.t.Fatal(err)
	}
	cfg.LocalMetadataDir = d.metaDir
	cfg.LocalTargetsDir = d.t.TempDir()
	cfg.RemoteTargetsURL = d.tgtURL
	u, err := updater.New(cfg)
	if err != nil {
		return nil, err
	}
	return u, u.Refresh()
}

func (d *device) mustCheck() *updater.Updater {
	d.t.Helper()
	u, err := d.check()
	if err != nil {
		d.t.Fatalf("honest refresh: %v", err)
	}
	return u
}

func (d *device) download(u *updater.Updater, path string) ([]byte, error) {
	d.t.Helper()
	tf, err := u.GetTargetInfo(path)
	if err != nil {
		return nil, err
	}
	_, data, err := u.DownloadTarget(tf, filepath.Join(d.t.TempDir(), "t"), "")
	return data, err
}

func custom(version string) verify.Custom {
	return verify.Custom{Component: "rootfs", Version: version, Hardware: []string{"board-a"}}
}

func TestRoundTrip(t *testing.T) {
	r := New(t)
	img := []byte("rootfs image 1.0.0")
	r.AddTarget("rootfs/1.0.0/rootfs.img", img, custom("1.0.0"))
	r.Publish()

	d := newDevice(t, r)
	u := d.mustCheck()
	got, err := d.download(u, "rootfs/1.0.0/rootfs.img")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Errorf("target bytes = %q, want %q", got, img)
	}
	tf, _ := u.GetTargetInfo("rootfs/1.0.0/rootfs.img")
	c, err := verify.ParseCustom(*tf.Custom)
	if err != nil {
		t.Fatal(err)
	}
	if c.Version != "1.0.0" || c.Component != "rootfs" {
		t.Errorf("custom = %+v", c)
	}
	if got, want := r.Requests("metadata/timestamp.json"), 1; got != want {
		t.Errorf("timestamp requests = %d, want %d", got, want)
	}
	resp, err := r.Client().Get(r.TargetURL("rootfs/1.0.0/rootfs.img"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET target URL: status %d", resp.StatusCode)
	}

	r.RemoveTarget("rootfs/1.0.0/rootfs.img")
	r.AddTarget("rootfs/1.1.0/rootfs.img", []byte("v1.1"), custom("1.1.0"))
	r.Publish()
	u = d.mustCheck()
	if _, err := u.GetTargetInfo("rootfs/1.0.0/rootfs.img"); err == nil {
		t.Error("removed target still listed")
	}
	if _, err := d.download(u, "rootfs/1.1.0/rootfs.img"); err != nil {
		t.Error(err)
	}
}

func TestCompressedTarget(t *testing.T) {
	r := New(t)
	img := bytes.Repeat([]byte("0123456789"), 1000)
	tg := r.AddCompressedTarget("app/app.zst", img, verify.Custom{Component: "app", Version: "2.0.0", Hardware: []string{"*"}}, 3000)
	r.Publish()
	c, err := verify.ParseCustom(tg.Custom)
	if err != nil {
		t.Fatal(err)
	}
	if c.Uncompressed == nil || c.Uncompressed.Length != int64(len(img)) || c.Uncompressed.SHA256 != SHA256(img) {
		t.Errorf("uncompressed = %+v, want length %d sha256 %s", c.Uncompressed, len(img), SHA256(img))
	}
	d := newDevice(t, r)
	if _, err := d.download(d.mustCheck(), "app/app.zst"); err != nil {
		t.Fatal(err)
	}
}

// Each attack must fail the go-tuf client, and the next honest publish
// must succeed again.
func TestAttacks(t *testing.T) {
	past := time.Now().Add(-time.Hour)
	tests := []struct {
		name   string
		attack func(r *Repo)
		// download: the attack is on the target bytes, not metadata.
		download bool
	}{
		{"TamperedTarget", func(r *Repo) { r.SetTargetBytes("rootfs/a.img", []byte("evil bytes!")) }, true},
		{"ExpiredTimestamp", func(r *Repo) { r.SetExpires(repository.RoleTimestamp, past); r.Publish() }, false},
		{"ExpiredTargets", func(r *Repo) { r.SetExpires(repository.RoleTargets, past); r.Publish() }, false},
		{"TimestampRollback", func(r *Repo) { r.ServeTimestampVersion(1) }, false},
		{"SnapshotRollback", func(r *Repo) { r.RollbackSnapshot(1) }, false},
		{"TargetsRollback", func(r *Repo) { r.RollbackTargets(1) }, false},
		{"MixAndMatch", func(r *Repo) {
			r.RemoveTarget("rootfs/b.img")
			r.Publish()
			v := r.Version(repository.RoleTargets)
			r.SetFile("metadata/"+itoa(v)+".targets.json", r.MetadataFile("1.targets.json"))
		}, false},
		{"RevokedTargetsKey", func(r *Repo) {
			r.RotateKeys(repository.RoleTargets)
			r.Publish()
			r.SignWith(repository.RoleTargets, r.RevokedKeys(repository.RoleTargets)...)
		}, false},
		{"ThresholdNotMet", func(r *Repo) {
			r.SetThreshold(repository.RoleTargets, 2)
			r.Publish()
			r.SignWith(repository.RoleTargets, r.Keys(repository.RoleTargets)[0])
		}, false},
		{"UnsignedTimestamp", func(r *Repo) { r.SignWith(repository.RoleTimestamp) }, false},
		{"ForgedRootOldKey", func(r *Repo) {
			r.RotateKeys(repository.RoleRoot)
			r.Publish()
			r.Forge(repository.RoleRoot, func(s any) {
				s.(*metadata.RootType).Expires = time.Now().Add(time.Hour)
			}, r.RevokedKeys(repository.RoleRoot)...)
		}, false},
		{"OversizedTimestamp", func(r *Repo) {
			r.SetFile("metadata/timestamp.json", bytes.Repeat([]byte(" "), 1<<20))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(t)
			r.AddTarget("rootfs/a.img", []byte("honest image"), custom("1.0.0"))
			r.Publish()
			r.AddTarget("rootfs/b.img", []byte("honest image 2"), custom("1.1.0"))
			r.Publish()
			d := newDevice(t, r)
			u := d.mustCheck()

			tt.attack(r)
			var err error
			if tt.download {
				_, err = d.download(u, "rootfs/a.img")
			} else {
				_, err = d.check()
			}
			if err == nil {
				t.Fatal("device accepted the attack")
			}
			t.Logf("refused: %v", err)

			r.ClearOverrides()
			r.AddTarget("rootfs/c.img", []byte("honest image 3"), custom("1.2.0"))
			r.Publish()
			u = d.mustCheck()
			if _, err := d.download(u, "rootfs/c.img"); err != nil {
				t.Errorf("next honest update: %v", err)
			}
		})
	}
}

func itoa(v int64) string { b, _ := json.Marshal(v); return string(b) }

func TestRootRotationWalk(t *testing.T) {
	r := New(t)
	d := newDevice(t, r)
	d.mustCheck()
	for range 3 {
		r.RotateKeys(repository.RoleRoot)
		r.Publish()
	}
	r.AddTarget("x", []byte("x"), custom("1.0.0"))
	r.Publish()
	u := d.mustCheck()
	if got, want := u.GetTrustedMetadataSet().Root.Signed.Version, int64(4); got != want {
		t.Errorf("trusted root version = %d, want %d", got, want)
	}
}

func TestMirrorIsStale(t *testing.T) {
	r := New(t)
	m := r.Mirror()
	r.AddTarget("x", []byte("x"), custom("1.0.0"))
	r.Publish()
	d := newDevice(t, r)
	d.mustCheck()
	d.metaURL, d.tgtURL = m.URL+"/metadata/", m.URL+"/targets/"
	_, err := d.check()
	var rb *metadata.ErrBadVersionNumber
	if !errors.As(err, &rb) {
		t.Errorf("stale mirror: err = %v, want a version rollback error", err)
	}
}

func TestWrapAndMalformedCustom(t *testing.T) {
	r := New(t)
	r.AddTarget("bad", []byte("x"), json.RawMessage(`{"component":5}`))
	r.AddTarget("none", []byte("y"), nil)
	r.Publish()
	failed := false
	r.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/metadata/timestamp.json" && !failed {
				failed = true
				http.Error(w, "injected", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, req)
		})
	})
	d := newDevice(t, r)
	if _, err := d.check(); err == nil {
		t.Error("refresh succeeded through an injected 503")
	}
	u := d.mustCheck()
	tf, err := u.GetTargetInfo("bad")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify.ParseCustom(*tf.Custom); !errors.Is(err, verify.ErrBadCustom) {
		t.Errorf("ParseCustom(malformed) = %v, want ErrBadCustom", err)
	}
	tf, err = u.GetTargetInfo("none")
	if err != nil {
		t.Fatal(err)
	}
	if tf.Custom != nil {
		t.Errorf("custom = %s, want none", *tf.Custom)
	}
	if got := r.Requests("metadata/timestamp.json"); got != 2 {
		t.Errorf("timestamp requests = %d, want 2", got)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		inject func(r *Repo)
	}{
		{"Stall", func(r *Repo) { r.Stall("metadata/timestamp.json") }},
		{"EndlessBody", func(r *Repo) { r.EndlessBody("metadata/timestamp.json") }},
		{"OversizeBody", func(r *Repo) { r.OversizeBody("metadata/timestamp.json", 100<<10) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(t)
			tt.inject(r)
			d := newDevice(t, r)
			// go-tuf's default client has no timeout: use the fetcher
			// limits for endless and oversized bodies, a short-lived
			// client for the stall.
			if tt.name == "Stall" {
				c := &http.Client{Timeout: 200 * time.Millisecond}
				resp, err := c.Get(r.MetadataURL() + "timestamp.json")
				if err == nil {
					resp.Body.Close()
					t.Fatal("stalled request answered")
				}
				return
			}
			if _, err := d.check(); err == nil {
				t.Fatal("refresh succeeded against a faulty server")
			}
			if got := r.Requests("metadata/timestamp.json"); got < 1 {
				t.Errorf("timestamp requests = %d", got)
			}
		})
	}
}
