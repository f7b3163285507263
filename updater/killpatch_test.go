package updater

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchback-ota/switchback/delta"
	"github.com/switchback-ota/switchback/internal/durable"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

// TestKillResumePatch kills a child process installing a static patch with
// SIGKILL mid-way, starts it again, and checks that the second process
// asks for the patch from the checkpointed frame boundary and installs the
// exact image.
func TestKillResumePatch(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	const ck = 256 << 10
	base, next := patchPair(8 << 20)
	repo := tuftest.New(t)
	repo.AddTarget("rootfs/1.2.0.img", next, custom("1.2.0"))
	patch := publishPatch(t, repo, "rootfs/1.2.0.img", base, next, "1.2.0", delta.DiffOptions{FrameSize: 64 << 10})
	repo.Publish()
	bounds := frameBoundaries(t, patch)
	stallAt := int64(len(patch)) / 2
	l := &patchLog{}
	var stalled atomic.Bool
	firstDone := make(chan struct{})
	repo.Wrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, ".patch") || !stalled.CompareAndSwap(false, true) {
				h.ServeHTTP(w, r)
				return
			}
			defer close(firstDone)
			var n atomic.Int64
			h.ServeHTTP(hookWriter{w, &n, func(total int64) {
				if total >= stallAt {
					<-r.Context().Done() // stalled until the client is gone
					panic(http.ErrAbortHandler)
				}
			}}, r)
		})
	})
	repo.Wrap(l.wrap) // outermost: sees every request

	// The device runs 1.1.0 (base) from slot a, as if installed before.
	dir := killDir(t, repo)
	if err := os.WriteFile(filepath.Join(dir, "a.img"), base, 0o600); err != nil {
		t.Fatal(err)
	}
	st := newPersisted()
	st.Components["rootfs"] = &componentState{Installed: "1.1.0", InstalledTargetSHA256: sha(base), Slots: map[string]slotContent{
		"a": {TargetSHA256: sha(base), Version: "1.1.0", Length: int64(len(base)), Complete: true, Image: sha(base)},
	}}
	b, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(dir, "state", stateFile)
	if err := os.MkdirAll(filepath.Dir(statePath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := durable.WriteFile(statePath, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// Kill once what the server sent before stalling is checkpointed (to
	// within one interval and one frame).
	killWhenCheckpointed(t, killChild(repo, dir, ck, false), statePath, func(pd pending) bool {
		return pd.Method == methodPatch && pd.WireOffset >= stallAt-ck-(128<<10)
	}, "the patch")
	pd, err := killState(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bounds[pd.WireOffset] {
		t.Fatalf("checkpoint at patch byte %d: not a frame boundary", pd.WireOffset)
	}
	<-firstDone // the stalled response sends nothing more
	l.reset()
	after := finishRestarted(t, killChild(repo, dir, ck, false), dir, next)
	if after.Phase != PhaseArmed || after.Method != methodPatch {
		t.Errorf("after resume: phase %q method %q, want armed by patch", after.Phase, after.Method)
	}
	if reqs := l.requests(); len(reqs) != 1 || reqs[0] != pd.WireOffset {
		t.Errorf("patch requests of the restarted child start at %v, want one at the checkpoint %d", reqs, pd.WireOffset)
	}
	if got, want := l.sent.Load(), int64(len(patch))-pd.WireOffset; got != want {
		t.Errorf("patch bytes sent after the restart: got %d, want %d", got, want)
	}
	t.Logf("patch of %d bytes in %d frames, killed with a checkpoint at %d (image byte %d)", len(patch), len(bounds)-1, pd.WireOffset, pd.Offset)
}
