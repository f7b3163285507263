package report

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

const (
	killRecords = 150
	killBatch   = 7 // records per POST
)

// TestMain lets the test binary play the reporting process of
// TestAtLeastOnceAcrossKill.
func TestMain(m *testing.M) {
	if dir := os.Getenv("REPORT_KILL_CHILD"); dir != "" {
		os.Exit(killChild(dir, os.Getenv("REPORT_KILL_URL")))
	}
	os.Exit(m.Run())
}

// killChild adds records killRecords times (resuming after the last one
// it knows it added: the one it was adding when killed may be added
// twice) and sends them; it exits 0 once all are acknowledged.
func killChild(dir, url string) int {
	r, err := New(Config{URL: url, Dir: filepath.Join(dir, "outbox"), BatchSize: killBatch,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		return 2
	}
	go r.Run(context.Background())
	mark := filepath.Join(dir, "added")
	for i := int(readCounter(mark)); i < killRecords; i++ {
		if err := r.Add(rec(i)); err != nil {
			return 3
		}
		if err := writeFileDurable(dir, "added", []byte(strconv.Itoa(i+1))); err != nil {
			return 4
		}
	}
	for {
		if n, _, d := r.Outbox().Len(); n == 0 && d == 0 {
			return 0
		}
		time.Sleep(time.Millisecond)
	}
}

// The reporting process is killed (SIGKILL) at random points, while adding
// and while sending, and restarted: every record reaches the endpoint at
// least once, and duplicates come only from what at-least-once allows: the
// record being added when killed, and a batch whose answer was lost (to a
// kill or to the endpoint).
func TestAtLeastOnceAcrossKill(t *testing.T) {
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		lost int // batches processed whose answer was lost
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b Batch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		if rand.N(4) == 0 { // a flaky endpoint: processed, answer lost
			w.WriteHeader(http.StatusBadGateway)
			lost++
		}
		for _, r := range b.Records {
			seen[r.Reason]++
		}
		mu.Unlock()
	}))
	defer srv.Close()
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(kill time.Duration) error {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), "REPORT_KILL_CHILD="+dir, "REPORT_KILL_URL="+srv.URL)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if kill > 0 {
			time.AfterFunc(kill, func() { cmd.Process.Kill() })
		}
		return cmd.Wait()
	}
	kills := 0
	for range 12 {
		if run(time.Duration(rand.N(40)+5)*time.Millisecond) != nil {
			kills++
		}
	}
	done := make(chan error, 1)
	go func() { done <- run(0) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("final run: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("final run did not drain the outbox")
	}
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for i := range killRecords {
		n := seen[strconv.Itoa(i)]
		if n == 0 {
			t.Errorf("record %d never reached the endpoint", i)
		}
		dups += max(n-1, 0)
	}
	// Each kill may add its current record twice and lose the answer to
	// the batch in flight; each lost answer resends one batch.
	if bound := kills*(1+killBatch) + lost*killBatch; dups > bound {
		t.Errorf("%d duplicates, more than at-least-once explains (%d kills, %d lost answers: at most %d)", dups, kills, lost, bound)
	}
	t.Logf("%d of 12 runs killed, %d answers lost; %d records, %d duplicates", kills, lost, killRecords, dups)
}
