package report

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

func rec(i int) Record { return Record{Type: "state", Component: "app", Reason: strconv.Itoa(i)} }

func TestOutboxBoundedOldestDropped(t *testing.T) {
	tests := []struct {
		name                 string
		maxRecords, maxBytes int64
		add                  int
		wantKept             int
	}{
		{"under the bounds", 10, 1 << 20, 8, 8},
		{"record bound", 5, 1 << 20, 8, 5},
		{"byte bound", 1000, 400, 20, 400 / len(mustJSON(rec(10)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o, err := OpenOutbox(dir, tt.maxRecords, tt.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.add {
				if _, err := o.Add(rec(i)); err != nil {
					t.Fatal(err)
				}
			}
			// Reopened, as after a crash, the outbox holds the same.
			o, err = OpenOutbox(dir, tt.maxRecords, tt.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			n, size, dropped := o.Len()
			if n != tt.wantKept || dropped != uint64(tt.add-tt.wantKept) || size > tt.maxBytes {
				t.Fatalf("Len = %d records, %d bytes, %d dropped; want %d kept, %d dropped, <= %d bytes",
					n, size, dropped, tt.wantKept, tt.add-tt.wantKept, tt.maxBytes)
			}
			recs, _, err := o.Peek(1000)
			if err != nil || len(recs) != tt.wantKept || recs[0].Reason != strconv.Itoa(tt.add-tt.wantKept) {
				t.Fatalf("Peek = %v, %v; want the newest %d", recs, err, tt.wantKept)
			}
			if err := o.Ack(recs, dropped); err != nil {
				t.Fatal(err)
			}
			o, _ = OpenOutbox(dir, tt.maxRecords, tt.maxBytes)
			r, err := o.Add(rec(99))
			if err != nil || r.Seq != uint64(tt.add) {
				t.Errorf("after emptying, next Seq = %d, %v; want %d (numbers go on)", r.Seq, err, tt.add)
			}
		})
	}
}

func mustJSON(r Record) []byte {
	b, _ := json.Marshal(Record{Seq: 10, Type: r.Type, Component: r.Component, Reason: r.Reason})
	return b
}

// virtualClock is a clock that Sleep advances.
type virtualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *virtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *virtualClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

// An endpoint down for a (virtual) day: the outbox stays within its
// bounds, and the batch sent once it is back counts what was dropped.
func TestEndpointDownForADay(t *testing.T) {
	var (
		mu      sync.Mutex
		up      bool
		batches []Batch
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var b Batch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		batches = append(batches, b)
	}))
	defer srv.Close()
	clock := &virtualClock{now: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	const maxBytes = 4 << 10
	r, err := New(Config{URL: srv.URL, Dir: dir, MaxRecords: 1000, MaxBytes: maxBytes, Now: clock.Now, Sleep: clock.Sleep,
		HTTPClient: srv.Client(), MinBackoff: time.Second, MaxBackoff: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	end := clock.Now().Add(24 * time.Hour)
	added, backoff := 0, time.Duration(0)
	for clock.Now().Before(end) {
		// A record every 10 minutes; the sender tries at its backoff.
		r.Add(rec(added))
		added++
		if _, err := r.SendOnce(context.Background()); err == nil {
			t.Fatal("SendOnce succeeded against a down endpoint")
		}
		backoff = nextBackoff(backoff, time.Second, 10*time.Minute)
		clock.Sleep(context.Background(), min(backoff, 10*time.Minute))
		if size := dirSize(t, dir); size > maxBytes+4096 {
			t.Fatalf("outbox holds %d bytes on disk after %d records, bound %d", size, added, maxBytes)
		}
	}
	kept, _, dropped := r.Outbox().Len()
	if kept+int(dropped) != added || dropped == 0 {
		t.Fatalf("kept %d + dropped %d != added %d", kept, dropped, added)
	}
	mu.Lock()
	up = true
	mu.Unlock()
	for {
		n, err := r.SendOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	var got, gotDropped int
	for _, b := range batches {
		got += len(b.Records)
		gotDropped += int(b.Dropped)
	}
	if got != kept || gotDropped != int(dropped) {
		t.Errorf("received %d records and %d dropped, want %d and %d", got, gotDropped, kept, dropped)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		info, err := e.Info()
		if err == nil {
			n += info.Size()
		}
	}
	return n
}
