package s3publish

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/repository/s3publish/s3test"
	"github.com/switchback-ota/switchback/verify"
)

// publisher returns a Publisher for the bucket whose requests go through
// rt (nil: a plain transport), with concurrency workers (0: the default).
func publisher(t *testing.T, b *s3test.Bucket, prefix string, rt http.RoundTripper, concurrency int, now func() time.Time) *Publisher {
	t.Helper()
	if rt == nil {
		rt = http.DefaultTransport.(*http.Transport).Clone()
	}
	p, err := New(Config{
		Endpoint: b.Endpoint, Bucket: b.Name, Prefix: prefix, Transport: rt,
		Concurrency: concurrency, PartSize: minPartSize, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// event is one write request (PUT or POST) or deletion seen by a recorder.
type event struct {
	seq   int // order among all starts and ends
	start bool
	key   string // object key, without the bucket
	code  int
	del   bool // a DELETE (start only)
}

// recorder is a RoundTripper that records the write requests it carries
// and can cut a publish short: after `cut` successful writes it cancels
// the publish's context (through cancel) before answering.
type recorder struct {
	next   http.RoundTripper
	bucket string

	mu     sync.Mutex
	events []event
	done   int // successful writes
	cut    int // 0: never
	cancel context.CancelFunc
	after  func() // called after each whole object written (cut first)
}

func newRecorder(bucket string) *recorder {
	return &recorder{next: http.DefaultTransport.(*http.Transport).Clone(), bucket: bucket}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	write := req.Method == http.MethodPut || req.Method == http.MethodPost
	key := strings.TrimPrefix(req.URL.Path, "/"+r.bucket+"/")
	if req.Method == http.MethodDelete {
		r.log(event{key: key, del: true})
	}
	if write {
		r.log(event{start: true, key: key})
	}
	resp, err := r.next.RoundTrip(req)
	if !write {
		return resp, err
	}
	code := 0
	if err == nil {
		code = resp.StatusCode
	}
	r.mu.Lock()
	r.events = append(r.events, event{seq: len(r.events), key: key, code: code})
	multipart := req.URL.Query().Has("uploadId")
	whole := req.Method == http.MethodPut && !multipart || req.Method == http.MethodPost && multipart
	if code/100 != 2 || !whole {
		r.mu.Unlock()
		return resp, err
	}
	r.done++ // a whole object (a single PUT, or a multipart completion)
	if r.cut > 0 && r.done == r.cut {
		r.cancel()
	}
	after := r.after
	r.mu.Unlock()
	if after != nil {
		after()
	}
	return resp, err
}

func (r *recorder) log(e event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.seq = len(r.events)
	r.events = append(r.events, e)
}

// writes returns, for each object key written, the first start and last
// end of the requests that wrote it.
func (r *recorder) writes() map[string][2]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][2]int{}
	for _, e := range r.events {
		if e.del {
			continue
		}
		w, ok := out[e.key]
		if !ok {
			w = [2]int{e.seq, e.seq}
		}
		w[1] = e.seq
		out[e.key] = w
	}
	return out
}

// testRepo is a signed repository on disk with a clock of its own.
type testRepo struct {
	*repository.Repo
	now  time.Time
	root []byte // 1.root.json, what devices trust
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	tr := &testRepo{now: time.Now().UTC().Truncate(time.Second)}
	r, err := repository.Init(context.Background(),
		repository.Config{Dir: filepath.Join(t.TempDir(), "repo"), Now: tr.clock},
		repository.InitOptions{KeysDir: filepath.Join(t.TempDir(), "keys")})
	if err != nil {
		t.Fatal(err)
	}
	tr.Repo = r
	if tr.root, err = os.ReadFile(filepath.Join(r.MetadataDir(), "1.root.json")); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (tr *testRepo) clock() time.Time { return tr.now }

// release adds and publishes rootfs version v, whose image is image.
func (tr *testRepo) release(t *testing.T, v string, image []byte) repository.Target {
	t.Helper()
	ctx := context.Background()
	target, err := tr.AddTarget(ctx, "rootfs/"+v+".img", strings.NewReader(string(image)),
		verify.Custom{Component: "rootfs", Version: v, Hardware: []string{"board-a"}}, repository.AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	return target
}

// image returns n deterministic bytes that differ with seed.
func image(seed string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed[i%len(seed)] ^ byte(i>>8)
	}
	return b
}

// firstDelete returns the sequence number of the first DELETE, or -1.
func (r *recorder) firstDelete() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.del {
			return e.seq
		}
	}
	return -1
}
