package s3publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/repository/s3publish/s3test"
)

// localFiles lists the files a publish of tr uploads, relative to its
// directory.
func localFiles(t *testing.T, tr *testRepo) []string {
	t.Helper()
	files, err := scanRepo(tr.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rel := range files {
		out = append(out, rel)
	}
	sort.Strings(out)
	return out
}

// checkOrder fails unless every write of a phase ended before the first
// write of any later phase started, and timestamp.json then root.json
// were the last objects written.
func checkOrder(t *testing.T, rec *recorder, prefix string) {
	t.Helper()
	w := rec.writes()
	type span struct {
		rel   string
		phase Phase
		first int
		last  int
	}
	var spans []span
	for key, s := range w {
		rel := strings.TrimPrefix(key, prefix+"/")
		ph, err := PhaseOf(rel)
		if err != nil {
			t.Fatalf("wrote %s, not a repository file: %v", key, err)
		}
		spans = append(spans, span{rel, ph, s[0], s[1]})
	}
	for _, a := range spans {
		for _, b := range spans {
			if a.phase < b.phase && a.last > b.first {
				t.Errorf("%s (%v) still being written after %s (%v) started", a.rel, a.phase, b.rel, b.phase)
			}
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return a.last - b.last })
	var tail []string
	for _, s := range spans {
		tail = append(tail, s.rel)
	}
	want := []string{"metadata/timestamp.json", "metadata/root.json"}
	if _, ok := w[prefix+"/metadata/root.json"]; !ok {
		want = want[:1] // root.json unchanged
	}
	if len(tail) < len(want) || !slices.Equal(tail[len(tail)-len(want):], want) {
		t.Errorf("writes ended with %v, want %v last", tail[max(0, len(tail)-2):], want)
	}
}

func TestPublishOrder(t *testing.T) {
	b := s3test.New(t)
	ctx := context.Background()
	tr := newTestRepo(t)
	// Larger than the 5 MiB part size: a multipart upload.
	tr.release(t, "1.0.0", image("one", 11<<20))
	tr.release(t, "1.0.1", image("small", 1000))
	rec := newRecorder(b.Name)
	res, err := publisher(t, b, "fleet/a", rec, 0, tr.clock).Publish(ctx, tr.Repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, rec, "fleet/a")
	all := localFiles(t, tr)
	if got := slices.Sorted(slices.Values(res.Uploaded)); !slices.Equal(got, all) || res.Skipped != 0 {
		t.Errorf("first publish uploaded %v, skipped %d; want every file: %v", got, res.Skipped, all)
	}
	if res.Uploaded[len(res.Uploaded)-1] != "metadata/root.json" {
		t.Errorf("Result.Uploaded ends with %s, want metadata/root.json", res.Uploaded[len(res.Uploaded)-1])
	}
	// Each object has the Cache-Control the README prescribes.
	for _, rel := range all {
		info, err := b.Client.StatObject(ctx, b.Name, "fleet/a/"+rel, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := info.Metadata.Get("Cache-Control"), repository.CacheControl(rel); got != want {
			t.Errorf("%s: Cache-Control %q, want %q", rel, got, want)
		}
	}

	// The next release uploads only what is new, in the same order.
	before := localFiles(t, tr)
	tr.release(t, "1.1.0", image("two", 3000))
	rec = newRecorder(b.Name)
	res, err = publisher(t, b, "fleet/a", rec, 0, tr.clock).Publish(ctx, tr.Repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, rec, "fleet/a")
	var want []string
	for _, rel := range localFiles(t, tr) {
		if !slices.Contains(before, rel) || rel == "metadata/timestamp.json" {
			want = append(want, rel)
		}
	}
	if got := slices.Sorted(slices.Values(res.Uploaded)); !slices.Equal(got, want) || res.Skipped != len(before)-1 {
		t.Errorf("second publish uploaded %v, skipped %d; want %v, skipped %d", got, res.Skipped, want, len(before)-1)
	}
}

func TestResumeInterrupted(t *testing.T) {
	b := s3test.New(t)
	tr := newTestRepo(t)
	tr.release(t, "1.0.0", image("big", 6<<20)) // multipart
	for _, v := range []string{"1.0.1", "1.0.2", "1.0.3"} {
		tr.release(t, v, image(v, 500))
	}
	all := localFiles(t, tr)
	for _, cut := range []int{1, 3, len(all) - 2} {
		prefix := fmt.Sprintf("cut%d", cut)
		ctx, cancel := context.WithCancel(context.Background())
		rec := newRecorder(b.Name)
		rec.cut, rec.cancel = cut, cancel
		_, err := publisher(t, b, prefix, rec, 1, tr.clock).Publish(ctx, tr.Repo, Options{})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cut after %d: Publish = %v, want context.Canceled", cut, err)
		}
		first := b.Objects(t, prefix+"/")
		if len(first) != cut {
			t.Errorf("cut after %d: %d objects in the bucket", cut, len(first))
		}
		if _, ok := first[prefix+"/metadata/timestamp.json"]; ok {
			t.Errorf("cut after %d: timestamp.json published before the rest", cut)
		}
		res, err := publisher(t, b, prefix, nil, 1, tr.clock).Publish(context.Background(), tr.Repo, Options{})
		if err != nil {
			t.Fatalf("resumed publish: %v", err)
		}
		for _, rel := range res.Uploaded {
			if _, ok := first[prefix+"/"+rel]; ok {
				t.Errorf("cut after %d: resumed publish uploaded %s again", cut, rel)
			}
		}
		if len(res.Uploaded)+res.Skipped != len(all) || res.Skipped != cut {
			t.Errorf("cut after %d: resumed publish uploaded %d, skipped %d, of %d", cut, len(res.Uploaded), res.Skipped, len(all))
		}
	}
}

// An object with the right size but other bytes (a store that lost or
// mangled it, or another tool's upload) is uploaded again.
func TestResumeReplacesDifferentObject(t *testing.T) {
	b := s3test.New(t)
	ctx := context.Background()
	tr := newTestRepo(t)
	target := tr.release(t, "1.0.0", image("one", 4096))
	rel := path.Join(repository.TargetsPath, target.File)
	bad := image("bad", 4096)
	if _, err := b.Client.PutObject(ctx, b.Name, "p/"+rel, strings.NewReader(string(bad)), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := publisher(t, b, "p", nil, 0, tr.clock).Publish(ctx, tr.Repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.Uploaded, rel) {
		t.Errorf("uploaded %v, not the damaged %s", res.Uploaded, rel)
	}
	// Published with its sha256: a second run skips it, even by the
	// slower check.
	res, err = publisher(t, b, "p", nil, 0, tr.clock).Publish(ctx, tr.Repo, Options{})
	if err != nil || len(res.Uploaded) != 0 {
		t.Errorf("publish of an unchanged repository uploaded %v, %v", res.Uploaded, err)
	}
}

func TestRemoteNewerRefused(t *testing.T) {
	b := s3test.New(t)
	ctx := context.Background()
	tr := newTestRepo(t)
	tr.release(t, "1.0.0", image("one", 100))
	old := filepath.Join(t.TempDir(), "old")
	if err := os.CopyFS(old, os.DirFS(tr.Dir())); err != nil {
		t.Fatal(err)
	}
	tr.release(t, "1.1.0", image("two", 100))
	if _, err := publisher(t, b, "", nil, 0, tr.clock).Publish(ctx, tr.Repo, Options{}); err != nil {
		t.Fatal(err)
	}
	stale, err := repository.Open(repository.Config{Dir: old})
	if err != nil {
		t.Fatal(err)
	}
	res, err := publisher(t, b, "", nil, 0, tr.clock).Publish(ctx, stale, Options{Prune: true})
	if !errors.Is(err, ErrRemoteNewer) || len(res.Uploaded) != 0 {
		t.Errorf("publishing an older copy = %v (uploaded %v), want ErrRemoteNewer and nothing", err, res.Uploaded)
	}
}

func TestIncompleteRefused(t *testing.T) {
	tr := newTestRepo(t)
	target := tr.release(t, "1.0.0", image("one", 100))
	if err := os.Remove(filepath.Join(tr.TargetsDir(), filepath.FromSlash(target.File))); err != nil {
		t.Fatal(err)
	}
	// No store needed: the check comes before any request.
	p, err := New(Config{Endpoint: "http://127.0.0.1:1", Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Publish(context.Background(), tr.Repo, Options{})
	if !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), target.File) {
		t.Errorf("Publish of a repository missing %s = %v, want ErrIncomplete naming it", target.File, err)
	}
}

// snapshotsWhole checks that every snapshot left in the bucket names
// targets metadata that is there, and every target of those is there.
func snapshotsWhole(t *testing.T, b *s3test.Bucket, prefix string) {
	t.Helper()
	objs := b.Objects(t, prefix)
	ctx := context.Background()
	p := publisher(t, b, prefix, nil, 0, nil)
	for key := range objs {
		rel := strings.TrimPrefix(key, prefix)
		if ph, _ := PhaseOf(rel); ph != PhaseSnapshotMetadata && ph != PhaseTargetsMetadata {
			continue
		}
		raw, _, err := p.getMetadata(ctx, rel)
		if err != nil {
			t.Fatal(err)
		}
		named := namedBy(t, raw)
		for _, n := range named {
			if _, ok := objs[prefix+n]; !ok {
				t.Errorf("%s names %s, which was deleted", rel, n)
			}
		}
	}
}

func TestPrune(t *testing.T) {
	b := s3test.New(t)
	ctx := context.Background()
	tr := newTestRepo(t)
	// Two copies of the bucket's history: "r" is pruned, "r2" is refused.
	publishAll := func(now func() time.Time, opts Options) (Result, error) {
		t.Helper()
		if _, err := publisher(t, b, "r2", nil, 0, now).Publish(ctx, tr.Repo, Options{}); err != nil {
			t.Fatal(err)
		}
		return publisher(t, b, "r", nil, 0, now).Publish(ctx, tr.Repo, opts)
	}
	old := tr.release(t, "1.0.0", image("one", 100))
	if _, err := publishAll(tr.clock, Options{Prune: true}); err != nil {
		t.Fatal(err)
	}
	if err := tr.RemoveTarget(old.Path); err != nil {
		t.Fatal(err)
	}
	tr.release(t, "1.1.0", image("two", 100))
	res, err := publishAll(tr.clock, Options{Prune: true})
	if err != nil || len(res.Deleted) != 0 {
		t.Fatalf("prune with nothing pruned locally deleted %v, %v", res.Deleted, err)
	}
	// Past the old targets' expiry the repository's prune drops them; the
	// bucket follows once the refreshed timestamp is up.
	tr.now = tr.now.Add(repository.DefaultExpiry[repository.RoleTargets] + time.Hour)
	removed, err := tr.Prune(ctx)
	if err != nil || len(removed) == 0 {
		t.Fatalf("local Prune = %v, %v", removed, err)
	}
	if err := tr.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(b.Name)
	res, err = publisher(t, b, "r", rec, 0, tr.clock).Publish(ctx, tr.Repo, Options{Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(slices.Values(res.Deleted)), removed; !slices.Equal(got, want) {
		t.Errorf("deleted %v, want what the repository pruned: %v", got, want)
	}
	if ts, ok := rec.writes()["r/metadata/timestamp.json"]; !ok || rec.firstDelete() < ts[1] {
		t.Errorf("deleted before the new timestamp was up (timestamp written %v, first delete %d)", ts, rec.firstDelete())
	}
	objs := b.Objects(t, "r/")
	for _, rel := range localFiles(t, tr) {
		if _, ok := objs["r/"+rel]; !ok {
			t.Errorf("%s missing after prune", rel)
		}
	}
	if len(objs) != len(localFiles(t, tr)) {
		t.Errorf("%d objects left, want the repository's %d files", len(objs), len(localFiles(t, tr)))
	}
	snapshotsWhole(t, b, "r/")

	// A publisher whose clock is behind sees the old metadata as live and
	// deletes nothing.
	behind := func() time.Time { return tr.now.Add(-repository.DefaultExpiry[repository.RoleTargets]) }
	before := b.Objects(t, "r2/")
	res, err = publisher(t, b, "r2", nil, 0, behind).Publish(ctx, tr.Repo, Options{Prune: true})
	if !errors.Is(err, ErrPruneRefused) || len(res.Deleted) != 0 {
		t.Fatalf("prune with unexpired metadata in the bucket = %v, deleted %v; want ErrPruneRefused, nothing", err, res.Deleted)
	}
	after := b.Objects(t, "r2/")
	for key := range before {
		if _, ok := after[key]; !ok {
			t.Errorf("refused prune deleted %s", key)
		}
	}
}

// namedBy returns the files, relative to the repository directory, that the
// snapshot or targets metadata raw names.
func namedBy(t *testing.T, raw []byte) []string {
	t.Helper()
	var m struct {
		Signed struct {
			Meta map[string]struct {
				Version int64 `json:"version"`
			} `json:"meta"`
			Targets map[string]struct {
				Hashes map[string]string `json:"hashes"`
			} `json:"targets"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for name, f := range m.Signed.Meta {
		out = append(out, versioned(f.Version, strings.TrimSuffix(name, ".json")))
	}
	for p, f := range m.Signed.Targets {
		dir, base := path.Split(p)
		out = append(out, path.Join(repository.TargetsPath, dir, f.Hashes["sha256"]+"."+base))
	}
	return out
}
