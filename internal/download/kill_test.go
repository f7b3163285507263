package download

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// checkpoint is what the child persists, as the updater does: the offset
// up to which the file is synced, and the validator of those bytes.
type checkpoint struct {
	Offset    int64  `json:"offset"`
	Validator string `json:"validator"`
	Done      bool   `json:"done"`
}

// writeDurable writes path atomically and durably: temp file, fsync,
// rename, fsync of the directory.
func writeDurable(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// fileSink writes to a file and checkpoints every interval bytes, after
// syncing the data.
type fileSink struct {
	f         *os.File
	state     string
	interval  int64
	cp        checkpoint
	off       int64
	validator string
}

func (s *fileSink) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.off += int64(n)
	return n, err
}

func (s *fileSink) Restart() error {
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	if _, err := s.f.Seek(0, 0); err != nil {
		return err
	}
	s.off = 0
	return s.save(checkpoint{})
}

func (s *fileSink) SetValidator(v string) error { s.validator = v; return nil }

func (s *fileSink) progress(done, _ int64) {
	// At each interval boundary crossed, so that the test knows which
	// offsets get checkpointed.
	if done/s.interval > s.cp.Offset/s.interval {
		if err := s.f.Sync(); err != nil {
			panic(err)
		}
		if err := s.save(checkpoint{Offset: done, Validator: s.validator}); err != nil {
			panic(err)
		}
	}
}

func (s *fileSink) save(cp checkpoint) error {
	b, _ := json.Marshal(cp)
	if err := writeDurable(s.state, b); err != nil {
		return err
	}
	s.cp = cp
	return nil
}

func readCheckpoint(path string) (checkpoint, error) {
	var cp checkpoint
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return cp, nil
	}
	if err != nil {
		return cp, err
	}
	return cp, json.Unmarshal(b, &cp)
}

// runDownloadChild is the installing process: resume from the checkpoint,
// fetch to the end, checkpoint every MiB.
func runDownloadChild() error {
	dir, url := os.Getenv("SB_DIR"), os.Getenv("SB_URL")
	length, err := strconv.ParseInt(os.Getenv("SB_LEN"), 10, 64)
	if err != nil {
		return err
	}
	state := filepath.Join(dir, "state.json")
	cp, err := readCheckpoint(state)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "image"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	// Bytes past the checkpoint may be anything after a power cut.
	if err := f.Truncate(cp.Offset); err != nil {
		return err
	}
	if _, err := f.Seek(cp.Offset, 0); err != nil {
		return err
	}
	c, err := New(Config{RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	sink := &fileSink{f: f, state: state, interval: 1 << 20, cp: cp, off: cp.Offset, validator: cp.Validator}
	res, err := c.Fetch(context.Background(), Request{URLs: []string{url}, Offset: cp.Offset, Length: length, Validator: cp.Validator}, sink, sink.progress)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return sink.save(checkpoint{Offset: length, Validator: res.Validator, Done: true})
}

// TestKillResume kills an installing child process with SIGKILL in the
// middle of a download, restarts it, and checks that it resumes from its
// durable checkpoint: the file is complete and correct, and at most 1 MiB
// was downloaded twice.
func TestKillResume(t *testing.T) {
	if os.Getenv("SWITCHBACK_DL_CHILD") == "1" {
		if err := runDownloadChild(); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	const L = 12 << 20
	const killAfter = 6<<20 + 300<<10 // the server stalls after this many bytes
	content := randomBytes(15, L)
	srv := newTestServer(t, content, func(i int) fault {
		if i == 0 {
			return fault{cutAt: killAfter, stall: true}
		}
		return fault{}
	})
	dir := t.TempDir()
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillResume$")
		cmd.Env = append(os.Environ(), "SWITCHBACK_DL_CHILD=1", "SB_DIR="+dir, "SB_URL="+srv.url(), "SB_LEN="+strconv.Itoa(L))
		cmd.Stderr = os.Stderr
		return cmd
	}
	first := child()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until everything the server sent is checkpointed, then kill.
	state := filepath.Join(dir, "state.json")
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	hang := time.After(2 * time.Minute) // a guard against a hung child, not a timing check
	for {
		cp, _ := readCheckpoint(state)
		if cp.Offset >= killAfter&^(1<<20-1) {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("child exited before the kill: %v", err)
		case <-hang:
			first.Process.Kill()
			t.Fatal("the child never checkpointed 6 MiB")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	cp, err := readCheckpoint(state)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Done || cp.Validator == "" {
		t.Fatalf("checkpoint after the kill: %+v, want a partial one with a validator", cp)
	}
	if err := child().Run(); err != nil {
		t.Fatalf("restarted child: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "image"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("file after resume: %d bytes, differs from the %d-byte image", len(got), L)
	}
	if n := srv.nreq(); n != 2 {
		t.Errorf("requests: got %d, want 2", n)
	}
	r := srv.req(1)
	if got, want := r.Header.Get("Range"), fmt.Sprintf("bytes=%d-", cp.Offset); got != want {
		t.Errorf("resume Range: got %q, want %q", got, want)
	}
	if got, want := r.Header.Get("If-Range"), `"v0"`; got != want {
		t.Errorf("resume If-Range: got %q, want %q", got, want)
	}
	wasted := srv.sent.Load() - L
	t.Logf("killed at %d bytes sent, checkpoint %d, re-downloaded %d bytes", killAfter, cp.Offset, wasted)
	if wasted > 1<<20 {
		t.Errorf("re-downloaded: got %d bytes, want at most 1 MiB", wasted)
	}
}
