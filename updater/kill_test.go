package updater

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
)

// fileSlot is a slot backed by one file, enough for an installing child
// process: what it writes survives a SIGKILL once synced.
// With buffered set, its writer declares [slots.KernelBuffered], as the
// library's file and partition slots do.
type fileSlot struct {
	name, path string
	buffered   bool
}

func (s *fileSlot) Name() string { return s.name }

func (s *fileSlot) Writer(ctx context.Context, size int64) (slots.Writer, error) {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if s.buffered {
		return bufferedFile{f}, nil
	}
	return f, nil
}

type bufferedFile struct{ *os.File }

func (bufferedFile) KernelBuffered() bool { return true }

func (s *fileSlot) Reader(ctx context.Context) (slots.Reader, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", slots.ErrEmpty, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return fileReader{f, fi.Size()}, nil
}

type fileReader struct {
	*os.File
	size int64
}

func (r fileReader) Size() int64 { return r.size }

// TestKillHelper is the installing device of TestKillResume, run in a
// child process; it does nothing in a normal test run.
func TestKillHelper(t *testing.T) {
	dir := os.Getenv("SWITCHBACK_KILL_DIR")
	if dir == "" {
		t.Skip("helper process of TestKillResume")
	}
	ck, err := strconv.ParseInt(os.Getenv("SWITCHBACK_KILL_CHECKPOINT"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	checkpointEvery = ck
	root, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	boot := slotstest.NewFakeBoot("a", "b")
	buffered := os.Getenv("SWITCHBACK_KILL_BUFFERED") == "1"
	u, err := New(Config{
		Hardware:    hw,
		StateDir:    filepath.Join(dir, "state"),
		TrustedRoot: root,
		MetadataURL: os.Getenv("SWITCHBACK_KILL_METADATA"),
		TargetsURL:  os.Getenv("SWITCHBACK_KILL_TARGETS"),
		Components: []Component{{Name: "rootfs", Boot: boot, FactoryVersion: "1.0.0", Slots: []slots.Slot{
			&fileSlot{"a", filepath.Join(dir, "a.img"), buffered}, &fileSlot{"b", filepath.Join(dir, "b.img"), buffered},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ups, err := u.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, up := range ups {
		// No Restart function: the armed trial is the test's to check.
		if err := u.Install(ctx, up); err != nil && !errors.Is(err, ErrRestartRequired) {
			t.Fatal(err)
		}
	}
}

// killState reads the transfer checkpoint of the child's state file: the
// wire offset the transfer resumes from.
func killState(path string) (pending, error) {
	var st struct {
		Components map[string]struct {
			Pending *pending `json:"pending"`
		} `json:"components"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return pending{}, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return pending{}, err
	}
	if pd := st.Components["rootfs"].Pending; pd != nil {
		return *pd, nil
	}
	return pending{}, nil
}

// killDir is the directory of a TestKillHelper child installing from
// repo, with the repository's root where the child reads it.
func killDir(t *testing.T, repo *tuftest.Repo) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "root.json"), repo.Root(), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// killChild is a TestKillHelper child process installing from repo into
// the slots in dir, with a checkpoint every ck bytes, into slots whose
// writes outlive the process when buffered.
func killChild(repo *tuftest.Repo, dir string, ck int, buffered bool) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "SWITCHBACK_KILL_DIR="+dir,
		"SWITCHBACK_KILL_CHECKPOINT="+strconv.Itoa(ck),
		"SWITCHBACK_KILL_BUFFERED="+map[bool]string{false: "0", true: "1"}[buffered],
		"SWITCHBACK_KILL_METADATA="+repo.MetadataURL(),
		"SWITCHBACK_KILL_TARGETS="+repo.TargetsURL())
	return cmd
}

// killWhenCheckpointed starts child and kills it with SIGKILL once ready
// holds for the checkpoint in its state file at statePath; the test fails
// if the child exits before, or never gets there (what names the
// checkpoint awaited).
func killWhenCheckpointed(t *testing.T, child *exec.Cmd, statePath string, ready func(pending) bool, what string) {
	t.Helper()
	var out bytes.Buffer
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	hang := time.After(2 * time.Minute) // a guard against a hung child, not a timing check
	for {
		pd, _ := killState(statePath)
		if ready(pd) {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("child exited before the kill: %v\n%s", err, out.Bytes())
		case <-hang:
			child.Process.Kill()
			t.Fatalf("the child never checkpointed %s\n%s", what, out.Bytes())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
}

// finishRestarted runs the restarted installing child to its end, checks
// that slot b holds want, and returns the state it left.
func finishRestarted(t *testing.T, child *exec.Cmd, dir string, want []byte) pending {
	t.Helper()
	if b, err := child.CombinedOutput(); err != nil {
		t.Fatalf("restarted child: %v\n%s", err, b)
	}
	got, err := os.ReadFile(filepath.Join(dir, "b.img"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("slot b after resume: %d bytes, differs from the %d-byte image", len(got), len(want))
	}
	after, err := killState(filepath.Join(dir, "state", stateFile))
	if err != nil {
		t.Fatal(err)
	}
	return after
}

// TestKillResume kills an installing child process with SIGKILL mid-way
// through a raw and a zstd target, starts it again, and checks that the
// install completes with the exact image, re-downloading at most
// checkpointEvery + 1 MiB; and, into a slot whose writes outlive the
// process (slots.KernelBuffered), at most the write-behind buffers, from
// the light checkpoint.
func TestKillResume(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	const ck = 2 << 20
	img := compressible(11, 24<<20)
	if bootID() == "" {
		t.Log("no boot id here: the kernel-buffered case resumes from the durable checkpoint")
	}
	for _, tc := range []struct {
		name                 string
		compressed, buffered bool
	}{
		{"raw", false, false},
		{"zstd", true, false},
		{"raw into a kernel-buffered slot", false, true},
	} {
		compressed, buffered, name := tc.compressed, tc.buffered, tc.name
		light := buffered && bootID() != ""
		t.Run(name, func(t *testing.T) {
			repo := tuftest.New(t)
			var length int64
			if compressed {
				length = repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 512<<10).Length
			} else {
				repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
				length = int64(len(img))
			}
			repo.Publish()
			stallAt := length/2 + 300<<10
			var served, responses, inflight atomic.Int64
			repo.Wrap(func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if !strings.HasPrefix(r.URL.Path, "/targets/") {
						h.ServeHTTP(w, r)
						return
					}
					inflight.Add(1)
					defer inflight.Add(-1)
					first := responses.Add(1) == 1
					h.ServeHTTP(hookWriter{w, &served, func(n int64) {
						if first && n >= stallAt {
							<-r.Context().Done() // stalled until the client is gone
						}
					}}, r)
				})
			})
			dir := killDir(t, repo)
			lightPath := filepath.Join(dir, "state", lightFile)
			wireOff := func(pd pending) int64 {
				if light {
					// The resume point is the light checkpoint.
					b, _ := os.ReadFile(lightPath)
					if r, err := decodeLight(b); err == nil {
						return r.Ck.Offset
					}
					return 0
				}
				if compressed {
					return pd.WireOffset
				}
				return pd.Offset
			}
			// What may be lost: a checkpoint interval and a frame, or, with
			// light checkpoints, the write-behind buffers.
			slack, limit := int64(ck+512<<10), int64(ck+1<<20)
			if light {
				// Everything received before the stall reaches the slot,
				// all but the buffer being filled under a light
				// checkpoint: the goal of 1 MiB holds.
				slack, limit = wbBufSize, 1<<20
			}
			statePath := filepath.Join(dir, "state", stateFile)
			// Kill once what the server sent before stalling is checkpointed
			// (to within one interval and one frame).
			killWhenCheckpointed(t, killChild(repo, dir, ck, buffered), statePath, func(pd pending) bool {
				return served.Load() >= stallAt && wireOff(pd) >= stallAt-slack
			}, fmt.Sprintf("%d bytes", stallAt-ck))
			// The stalled handler writes on into the dead connection until
			// it notices; count what it wrote before reading served.
			for inflight.Load() != 0 {
				time.Sleep(time.Millisecond)
			}
			pd, err := killState(statePath)
			if err != nil {
				t.Fatal(err)
			}
			resumeAt := wireOff(pd)
			sentBefore := served.Load()
			after := finishRestarted(t, killChild(repo, dir, ck, buffered), dir, img)
			if after.Phase != PhaseArmed {
				t.Errorf("phase after resume: got %q, want %q", after.Phase, PhaseArmed)
			}
			if got, want := served.Load()-sentBefore, length-resumeAt; got != want {
				t.Errorf("bytes sent after the restart: got %d, want %d (the rest after the checkpoint)", got, want)
			}
			wasted := served.Load() - length
			t.Logf("%s: %d bytes on the wire, killed after %d sent, checkpoint at %d, re-downloaded %d", name, length, sentBefore, resumeAt, wasted)
			if wasted > limit {
				t.Errorf("re-downloaded: got %d bytes, want at most %d", wasted, limit)
			}
			if b, _ := os.ReadFile(lightPath); len(b) != 0 {
				t.Errorf("a %d-byte light checkpoint is left after the install, want it cleared", len(b))
			}
		})
	}
}
