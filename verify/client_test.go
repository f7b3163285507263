package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

func newClient(t *testing.T, r *testRepo, dir string) *verify.Client {
	t.Helper()
	return newClientWith(t, r, dir, nil)
}

// newClientWith is newClient with edit applied to the configuration.
func newClientWith(t *testing.T, r *testRepo, dir string, edit func(*verify.Config)) *verify.Client {
	t.Helper()
	cfg := verify.Config{
		Root:        r.Root(),
		MetadataURL: r.MetadataURL(),
		TargetsURL:  r.TargetsURL(),
		Dir:         dir,
		Now:         testNow,
		MinTime:     testEpoch.AddDate(-1, 0, 0),
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := verify.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func refresh(t *testing.T, c *verify.Client) *verify.Targets {
	t.Helper()
	ts, err := c.Refresh(context.Background())
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	return ts
}

func paths(ts []verify.Target) []string {
	var p []string
	for _, t := range ts {
		p = append(p, t.Path)
	}
	return p
}

func TestRefresh(t *testing.T) {
	for _, consistent := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "consistent"}[consistent], func(t *testing.T) {
			r := newTestRepo(t, consistent)
			image := []byte("rootfs image 1.1.0")
			r.addTarget("", "rootfs/rootfs-1.1.0.img", image, customFor("rootfs", "1.1.0", "board-a"))
			r.addTarget("", "rootfs/rootfs-1.0.0.img", []byte("old"), customFor("rootfs", "1.0.0", "board-a"))
			r.addTarget("", "notes.txt", []byte("no custom"), nil)
			r.addTarget("", "app/bad.bin", []byte("bad"), map[string]any{"component": "app", "version": "1.2", "hardware": []string{"*"}})
			r.addTarget("", "app/broken.bin", []byte("broken"), json.RawMessage(`"just a string"`))
			r.publish()
			dir := filepath.Join(t.TempDir(), "tuf")
			c := newClient(t, r, dir)
			ts := refresh(t, c)

			if got, want := paths(ts.Targets), []string{"rootfs/rootfs-1.0.0.img", "rootfs/rootfs-1.1.0.img"}; !slices.Equal(got, want) {
				t.Errorf("Targets = %q, want %q", got, want)
			}
			var rejected []string
			for _, rj := range ts.Rejected {
				rejected = append(rejected, rj.Path)
				if !errors.Is(rj.Err, verify.ErrBadCustom) {
					t.Errorf("Rejected %s: %v, want ErrBadCustom", rj.Path, rj.Err)
				}
			}
			if want := []string{"app/bad.bin", "app/broken.bin", "notes.txt"}; !slices.Equal(rejected, want) {
				t.Errorf("Rejected = %q, want %q", rejected, want)
			}
			if ts.ConsistentSnapshot != consistent {
				t.Errorf("ConsistentSnapshot = %v, want %v", ts.ConsistentSnapshot, consistent)
			}
			if got, want := ts.Expires, testEpoch.AddDate(1, 0, 0); !got.Equal(want) {
				t.Errorf("Expires = %v, want %v", got, want)
			}
			if ts.RootVersion != 1 || ts.TimestampVersion != 3 || ts.SnapshotVersion != 3 || ts.TargetsVersion != 3 {
				t.Errorf("versions root %d timestamp %d snapshot %d targets %d, want 1 3 3 3",
					ts.RootVersion, ts.TimestampVersion, ts.SnapshotVersion, ts.TargetsVersion)
			}

			// Rejected targets are never selected.
			if tg, err := verify.Select(ts.Targets, verify.Policy{Component: "app", Hardware: "x"}); !errors.Is(err, verify.ErrNoUpdate) {
				t.Errorf("Select(app) = %v, %v; want ErrNoUpdate (its only targets are rejected)", tg.Path, err)
			}

			// The chosen target's URL serves its bytes, which verify.
			tg, err := verify.Select(ts.Targets, verify.Policy{Component: "rootfs", Hardware: "board-a", Installed: "1.0.0"})
			if err != nil {
				t.Fatal(err)
			}
			if consistent != strings.Contains(tg.URL, tg.SHA256()+".rootfs-1.1.0.img") {
				t.Errorf("URL %s: hash prefix present = %v, want %v", tg.URL, !consistent, consistent)
			}
			res, err := http.Get(tg.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			v, err := tg.Verifier()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(v, res.Body); err != nil {
				t.Fatal(err)
			}
			if err := v.Verify(); err != nil {
				t.Errorf("Verify of served target: %v", err)
			}

			// Metadata is stored in a private directory.
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := fi.Mode().Perm(), os.FileMode(0o700); got != want {
				t.Errorf("Dir mode = %v, want %v", got, want)
			}
			for _, name := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					t.Errorf("stored %s: %v", name, err)
				}
			}
		})
	}
}

func TestRefreshSeesNewRelease(t *testing.T) {
	r := newTestRepo(t, true)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.publish()
	dir := t.TempDir()
	c := newClient(t, r, dir)
	refresh(t, c)
	ts := refresh(t, c) // nothing new: equal timestamp is fine
	if got := len(ts.Targets); got != 1 {
		t.Fatalf("second refresh: %d targets, want 1", got)
	}
	r.addTarget("", "app/1.1.0", []byte("two"), customFor("app", "1.1.0", "*"))
	r.publish()
	ts = refresh(t, c)
	if got, want := paths(ts.Targets), []string{"app/1.0.0", "app/1.1.0"}; !slices.Equal(got, want) {
		t.Errorf("after publish Targets = %q, want %q", got, want)
	}
	// A restarted process sees the same from the stored metadata.
	ts = refresh(t, newClient(t, r, dir))
	if got, want := ts.TargetsVersion, int64(4); got != want {
		t.Errorf("after restart TargetsVersion = %d, want %d", got, want)
	}
}

func TestRootRotation(t *testing.T) {
	r := newTestRepo(t, false)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.rotateRoot(metadata.ROOT)      // v2: new root key
	r.rotateRoot(metadata.TIMESTAMP) // v3: new timestamp key
	dir := t.TempDir()
	c := newClient(t, r, dir)
	ts := refresh(t, c)
	if got, want := ts.RootVersion, int64(3); got != want {
		t.Fatalf("RootVersion = %d, want %d", got, want)
	}
	for _, want := range []string{"metadata/2.root.json", "metadata/3.root.json", "metadata/4.root.json"} {
		if !slices.Contains(r.requested(), want) {
			t.Errorf("requests %q lack %s", r.requested(), want)
		}
	}
	stored, err := metadata.Root().FromFile(filepath.Join(dir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stored.Signed.Version, int64(3); got != want {
		t.Errorf("stored root version = %d, want %d", got, want)
	}

	for _, name := range []string{"roots/2.root.json", "roots/3.root.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("root history: %v", err)
		}
	}

	// A new process with the same (old, v1) embedded root starts from the
	// newest root on disk: it does not walk 2 and 3 again. By default it
	// looks for 4.root.json, then the timestamp (TUF 5.3, 5.4); in the
	// opt-in idle mode, within the interval, the timestamp alone.
	for _, optIn := range []bool{false, true} {
		before := len(r.requested())
		c := newClient(t, r, dir)
		if optIn {
			c = newClientWith(t, r, dir, func(cfg *verify.Config) { cfg.FullRefreshInterval = time.Hour })
		}
		ts = refresh(t, c)
		if ts.RootVersion != 3 {
			t.Errorf("after restart RootVersion = %d, want 3", ts.RootVersion)
		}
		after := r.requested()[before:]
		want := []string{"metadata/4.root.json", "metadata/timestamp.json"}
		if optIn {
			want = []string{"metadata/timestamp.json"}
		}
		if !slices.Equal(after, want) {
			t.Errorf("after restart (opt-in idle mode %v) requests = %q, want %q", optIn, after, want)
		}
	}
}

func TestOlderRootOnDiskNotTrusted(t *testing.T) {
	r := newTestRepo(t, false)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.rotateRoot(metadata.ROOT)
	r.rotateRoot(metadata.ROOT)
	dir := t.TempDir()
	c := newClient(t, r, dir)
	refresh(t, c)
	// Someone puts the older, still validly self-signed v1 root back.
	if err := os.WriteFile(filepath.Join(dir, "root.json"), r.Root(), 0o644); err != nil {
		t.Fatal(err)
	}
	before := len(r.requested())
	ts := refresh(t, c)
	if ts.RootVersion != 3 {
		t.Errorf("RootVersion = %d, want 3", ts.RootVersion)
	}
	if after := r.requested()[before:]; slices.Contains(after, "metadata/2.root.json") {
		t.Errorf("requests %q: the chain was walked from the older root", after)
	}
	stored, err := metadata.Root().FromFile(filepath.Join(dir, "root.json"))
	if err != nil || stored.Signed.Version != 3 {
		t.Errorf("stored root after refresh: %v, %v; want version 3", stored, err)
	}
}

func TestRecoverCorruptOrLostMetadata(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		corrupt string // file expected moved aside
		rewalk  bool   // root chain walked again from the embedded root
	}{
		// The root history lets a damaged root.json be rebuilt locally.
		{"corrupt root", func(t *testing.T, dir string) { write(t, dir, "root.json", "{garbage") }, "root.json", false},
		{"truncated root", func(t *testing.T, dir string) { truncate(t, dir, "root.json") }, "root.json", false},
		{"root signed by nobody", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "root.json"))
			write(t, dir, "root.json", strings.Replace(string(b), `"version":3`, `"version":9`, 1))
		}, "root.json", false},
		{"root of another repository", func(t *testing.T, dir string) {
			write(t, dir, "root.json", string(foreignRoot(t, 9)))
		}, "", false},
		{"root of another repository, history lost", func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "roots"))
			write(t, dir, "root.json", string(foreignRoot(t, 9)))
		}, "", true},
		{"root history lost", func(t *testing.T, dir string) { os.RemoveAll(filepath.Join(dir, "roots")) }, "", true},
		{"root history corrupt", func(t *testing.T, dir string) { write(t, dir, "roots/2.root.json", "[]") }, "roots/2.root.json", true},
		{"root history entry of another repository", func(t *testing.T, dir string) {
			write(t, dir, "roots/2.root.json", string(foreignRoot(t, 2)))
		}, "roots/2.root.json", true},
		{"corrupt timestamp", func(t *testing.T, dir string) { write(t, dir, "timestamp.json", "\x00\x01") }, "timestamp.json", false},
		{"corrupt snapshot", func(t *testing.T, dir string) { truncate(t, dir, "snapshot.json") }, "snapshot.json", false},
		{"corrupt targets", func(t *testing.T, dir string) {
			write(t, dir, "targets.json", `{"signed":{"_type":"targets","expires":"never"}}`)
		}, "targets.json", false},
		{"timestamp where targets should be", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "timestamp.json"))
			write(t, dir, "targets.json", string(b))
		}, "targets.json", false},
		{"all deleted", func(t *testing.T, dir string) {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}, "", true},
		{"dir deleted", func(t *testing.T, dir string) { os.RemoveAll(dir) }, "", true},
		{"stale temporary files", func(t *testing.T, dir string) {
			write(t, dir, "tuf_tmp12345", "partial")
			write(t, dir, ".targets.json8361", "partial")
			write(t, dir, "roots/.3.root.json1234", "partial")
		}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newTestRepo(t, true)
			r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
			r.rotateRoot(metadata.ROOT)
			r.rotateRoot(metadata.SNAPSHOT)
			dir := filepath.Join(t.TempDir(), "tuf")
			refresh(t, newClient(t, r, dir))
			tt.damage(t, dir)
			before := len(r.requested())
			// A new process, as after a power cut or a wiped data partition.
			ts := refresh(t, newClient(t, r, dir))
			if ts.RootVersion != 3 || len(ts.Targets) != 1 {
				t.Errorf("after recovery RootVersion %d, %d targets; want 3, 1", ts.RootVersion, len(ts.Targets))
			}
			after := r.requested()[before:]
			if got := slices.Contains(after, "metadata/2.root.json"); got != tt.rewalk {
				t.Errorf("root chain walked again = %v, want %v (requests %q)", got, tt.rewalk, after)
			}
			if tt.corrupt != "" {
				if _, err := os.Stat(filepath.Join(dir, tt.corrupt+".corrupt")); err != nil {
					t.Errorf("corrupt %s not moved aside: %v", tt.corrupt, err)
				}
			}
			entries, _ := os.ReadDir(dir)
			hist, _ := os.ReadDir(filepath.Join(dir, "roots"))
			for _, e := range append(entries, hist...) {
				if strings.HasPrefix(e.Name(), "tuf_tmp") || strings.HasPrefix(e.Name(), ".") {
					t.Errorf("temporary file %s left in Dir", e.Name())
				}
			}
			// And the recovered state is good for the next refresh too.
			refresh(t, newClient(t, r, dir))
		})
	}
}

// versioned is the consistent-snapshot file name of m's current version.
func versioned[T metadata.Roles](m *metadata.Metadata[T]) string {
	var v struct {
		Signed struct {
			Type    string `json:"_type"`
			Version int64  `json:"version"`
		} `json:"signed"`
	}
	b, _ := m.ToBytes(false)
	json.Unmarshal(b, &v)
	return fmt.Sprintf("metadata/%d.%s.json", v.Signed.Version, v.Signed.Type)
}

// foreignRoot returns a validly self-signed root of some other repository.
func foreignRoot(t *testing.T, version int64) []byte {
	other := newTestRepo(t, true)
	other.root.Signed.Version = version
	other.storeRoot()
	return other.rootFiles[len(other.rootFiles)-1]
}

func write(t *testing.T, dir, name, s string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, dir, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dir, name, string(b[:len(b)/2]))
}

func TestRefreshRefuses(t *testing.T) {
	past := testEpoch.Add(-time.Hour)
	tests := []struct {
		name   string
		attack func(r *testRepo)
		want   any // pointer to a go-tuf error type expected in the chain
	}{
		{"expired timestamp", func(r *testRepo) { r.timestamp.Signed.Expires = past; r.publish() }, &metadata.ErrExpiredMetadata{}},
		{"expired snapshot", func(r *testRepo) { r.snapshot.Signed.Expires = past; r.publish() }, &metadata.ErrExpiredMetadata{}},
		{"expired targets", func(r *testRepo) { r.targets.Signed.Expires = past; r.publish() }, &metadata.ErrExpiredMetadata{}},
		{"expired root", func(r *testRepo) {
			r.root.Signed.Expires = past
			r.rotateRoot(metadata.TARGETS)
		}, &metadata.ErrExpiredMetadata{}},
		{"timestamp signed by an unknown key", func(r *testRepo) {
			priv, _ := tuftest.NewMetadataKey(r.t)
			tuftest.SignMetadata(r.t, r.timestamp, priv)
			r.set("metadata/timestamp.json", tuftest.EncodeMetadata(r.t, r.timestamp))
		}, &metadata.ErrUnsignedMetadata{}},
		{"targets under threshold", func(r *testRepo) {
			r.addKey(metadata.TARGETS)
			r.root.Signed.Roles[metadata.TARGETS].Threshold = 2
			r.root.Signed.Version++
			r.storeRoot()
			r.publish() // signs with both keys
			only := r.keys[metadata.TARGETS][:1]
			tuftest.SignMetadata(r.t, r.targets, only...)
			b := tuftest.EncodeMetadata(r.t, r.targets)
			r.set("metadata/targets.json", b)
			r.set(versioned(r.targets), b)
		}, &metadata.ErrUnsignedMetadata{}},
		{"unsigned snapshot", func(r *testRepo) {
			r.snapshot.ClearSignatures()
			r.set("metadata/snapshot.json", tuftest.EncodeMetadata(r.t, r.snapshot))
			r.set(versioned(r.snapshot), tuftest.EncodeMetadata(r.t, r.snapshot))
		}, &metadata.ErrUnsignedMetadata{}},
		{"root v2 not signed by v1 keys", func(r *testRepo) {
			r.keys[metadata.ROOT] = nil
			for _, id := range slicesClone(r.root.Signed.Roles[metadata.ROOT].KeyIDs) {
				r.root.Signed.RevokeKey(id, metadata.ROOT)
			}
			r.addKey(metadata.ROOT)
			r.root.Signed.Version++
			r.storeRoot() // signed by the new key only
		}, &metadata.ErrUnsignedMetadata{}},
		{"oversized timestamp", func(r *testRepo) {
			b := r.get("metadata/timestamp.json")
			r.set("metadata/timestamp.json", append(b, bytes.Repeat([]byte(" "), 20000)...))
		}, &metadata.ErrDownloadLengthMismatch{}},
		{"mix and match: old targets under new snapshot", func(r *testRepo) {
			old := r.get("metadata/targets.json")
			r.addTarget("", "app/2.0.0", []byte("two"), customFor("app", "2.0.0", "*"))
			r.publish()
			r.set("metadata/targets.json", old)
			r.set(versioned(r.targets), old)
		}, &metadata.ErrBadVersionNumber{}},
		{"root version in the file not the one in its URL", func(r *testRepo) {
			r.root.Signed.Version += 2
			tuftest.SignMetadata(r.t, r.root, r.keys[metadata.ROOT]...)
			r.set("metadata/2.root.json", tuftest.EncodeMetadata(r.t, r.root))
		}, &metadata.ErrBadVersionNumber{}},
		{"snapshot version in the file not the one in its URL", func(r *testRepo) {
			r.snapshot.Signed.Version++
			tuftest.SignMetadata(r.t, r.snapshot, r.keys[metadata.SNAPSHOT]...)
			r.set(fmt.Sprintf("metadata/%d.snapshot.json", r.snapshot.Signed.Version-1), tuftest.EncodeMetadata(r.t, r.snapshot))
		}, &metadata.ErrBadVersionNumber{}},
		{"snapshot not matching timestamp", func(r *testRepo) {
			old := r.get("metadata/snapshot.json")
			r.publish()
			r.set("metadata/snapshot.json", old)
			r.set(versioned(r.snapshot), old)
		}, &metadata.ErrBadVersionNumber{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRepo(t, true)
			r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
			r.publish()
			tt.attack(r)
			_, err := newClient(t, r, t.TempDir()).Refresh(context.Background())
			if !errors.Is(err, verify.ErrUntrusted) {
				t.Fatalf("Refresh = %v, want ErrUntrusted", err)
			}
			if !errors.Is(err, tt.want.(error)) {
				t.Errorf("Refresh = %v, want %T in the chain", err, tt.want)
			}
		})
	}
}

func TestRollbackAfterTrust(t *testing.T) {
	r := newTestRepo(t, true)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.publish()
	oldTimestamp := r.get("metadata/timestamp.json") // version 3
	r.publish()
	dir := t.TempDir()
	c := newClient(t, r, dir)
	if ts := refresh(t, c); ts.TimestampVersion != 4 {
		t.Fatalf("TimestampVersion = %d, want 4", ts.TimestampVersion)
	}
	r.set("metadata/timestamp.json", oldTimestamp)
	for _, c := range []*verify.Client{c, newClient(t, r, dir)} { // same process, and after a restart
		_, err := c.Refresh(context.Background())
		if !errors.Is(err, verify.ErrUntrusted) || !errors.Is(err, &metadata.ErrBadVersionNumber{}) {
			t.Errorf("Refresh with rolled back timestamp = %v, want ErrUntrusted with ErrBadVersionNumber", err)
		}
	}
}

func TestClockUnset(t *testing.T) {
	r := newTestRepo(t, false)
	c, err := verify.New(verify.Config{
		Root: r.Root(), MetadataURL: r.MetadataURL(), Dir: t.TempDir(),
		Now:     func() time.Time { return time.Unix(0, 0) },
		MinTime: testEpoch.AddDate(-1, 0, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Refresh(context.Background()); !errors.Is(err, verify.ErrClockUnset) {
		t.Errorf("Refresh in 1970 = %v, want ErrClockUnset", err)
	}
	if got := r.requested(); len(got) != 0 {
		t.Errorf("requests %q made with an unset clock", got)
	}
}

func TestClockAdvancesPastExpiry(t *testing.T) {
	r := newTestRepo(t, false)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.publish()
	now := testEpoch
	c, err := verify.New(verify.Config{
		Root: r.Root(), MetadataURL: r.MetadataURL(), Dir: t.TempDir(),
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	refresh(t, c)
	now = testEpoch.AddDate(2, 0, 0) // the same, stored metadata is now stale
	if _, err := c.Refresh(context.Background()); !errors.Is(err, &metadata.ErrExpiredMetadata{}) {
		t.Errorf("Refresh two years later = %v, want ErrExpiredMetadata", err)
	}
}

func TestRefreshFetchFailure(t *testing.T) {
	r := newTestRepo(t, false)
	dir := t.TempDir()
	c := newClient(t, r, dir)
	r.set("metadata/timestamp.json", nil)
	r.mu.Lock()
	delete(r.files, "metadata/timestamp.json")
	r.mu.Unlock()
	_, err := c.Refresh(context.Background())
	if !errors.Is(err, verify.ErrFetch) || errors.Is(err, verify.ErrUntrusted) {
		t.Errorf("Refresh with missing timestamp = %v, want ErrFetch and not ErrUntrusted", err)
	}
	r.srv.Close()
	_, err = c.Refresh(context.Background())
	if !errors.Is(err, verify.ErrFetch) {
		t.Errorf("Refresh with server down = %v, want ErrFetch", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Refresh(ctx); !errors.Is(err, verify.ErrFetch) || !errors.Is(err, context.Canceled) {
		t.Errorf("Refresh with cancelled ctx = %v, want ErrFetch and context.Canceled", err)
	}
}

func TestCustomFetcher(t *testing.T) {
	r := newTestRepo(t, false)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.publish()
	var calls int
	c, err := verify.New(verify.Config{
		Root: r.Root(), MetadataURL: r.MetadataURL(), Dir: t.TempDir(), Now: testNow,
		Fetcher: func(ctx context.Context) verify.Fetcher {
			calls++
			return verify.NewHTTPFetcher(ctx, &http.Client{})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	refresh(t, c)
	refresh(t, c)
	if calls != 2 {
		t.Errorf("Fetcher called %d times, want once per refresh (2)", calls)
	}
}

func TestConcurrentRefresh(t *testing.T) {
	r := newTestRepo(t, true)
	r.addTarget("", "app/1.0.0", []byte("one"), customFor("app", "1.0.0", "*"))
	r.publish()
	c := newClient(t, r, t.TempDir())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := c.Refresh(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func TestNewRefusesBadConfig(t *testing.T) {
	r := newTestRepo(t, false)
	good := verify.Config{Root: r.Root(), MetadataURL: r.MetadataURL(), Dir: t.TempDir()}
	tests := []struct {
		name string
		edit func(*verify.Config)
	}{
		{"no root", func(c *verify.Config) { c.Root = nil }},
		{"root not json", func(c *verify.Config) { c.Root = []byte("root") }},
		{"root badly signed", func(c *verify.Config) {
			c.Root = bytes.Replace(r.Root(), []byte(`"version":1`), []byte(`"version":2`), 1)
		}},
		{"no metadata url", func(c *verify.Config) { c.MetadataURL = "" }},
		{"bad metadata url", func(c *verify.Config) { c.MetadataURL = "http://[::1" }},
		{"no dir", func(c *verify.Config) { c.Dir = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.edit(&cfg)
			if _, err := verify.New(cfg); err == nil {
				t.Error("New succeeded, want an error")
			}
		})
	}
	if _, err := verify.New(good); err != nil {
		t.Errorf("New(good) = %v", err)
	}
}

// BenchmarkRefresh measures a routine check: nothing new published, the
// stored metadata is current (one timestamp fetch, the rest verified from
// disk, files fsynced).
func BenchmarkRefresh(b *testing.B) {
	r := newTestRepo(b, true)
	for i := range 100 {
		r.addTarget("", fmt.Sprintf("app/app-1.0.%d", i), []byte{byte(i)}, customFor("app", fmt.Sprintf("1.0.%d", i), "*"))
	}
	r.publish()
	c, err := verify.New(verify.Config{Root: r.Root(), MetadataURL: r.MetadataURL(), Dir: b.TempDir(), Now: testNow})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
