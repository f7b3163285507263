package updater

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
)

// writeState replaces the device's state file, as a file left by another
// build, an edit or a bug would.
func (d *device) writeState(json string) {
	d.t.Helper()
	if err := os.WriteFile(filepath.Join(d.stateDir, stateFile), []byte(json), 0o600); err != nil {
		d.t.Fatal(err)
	}
}

// loseState deletes the device's state file.
func (d *device) loseState() {
	d.t.Helper()
	if err := os.Remove(filepath.Join(d.stateDir, stateFile)); err != nil {
		d.t.Fatal(err)
	}
}

// confirmedWithState is a device whose repository publishes 1.1.0, a
// 5000-byte image, started on the state file state(the image's SHA-256)
// and past Confirm.
func confirmedWithState(t *testing.T, state func(img string) string) *device {
	t.Helper()
	repo := tuftest.New(t)
	img := image("1.1.0", 5000)
	repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	repo.Publish()
	d := newDevice(t, repo)
	d.writeState(state(sha(img)))
	d.start()
	if err := d.u.Confirm(context.Background()); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	return d
}

// TestStateNamingUnknownSlot: a state whose pending install names a slot
// the configuration does not have must not wedge Confirm and Install.
func TestStateNamingUnknownSlot(t *testing.T) {
	for _, phase := range []Phase{PhaseDownloading, PhaseVerified, PhaseArmed} {
		t.Run(string(phase), func(t *testing.T) {
			d := confirmedWithState(t, func(img string) string {
				return fmt.Sprintf(`{"version":1,"components":{"rootfs":{"installed":"1.0.0",
				"slots":{"c":{"target":"%s","version":"1.1.0","length":5000,"complete":true}},
				"pending":{"phase":%q,"slot":"c","target_path":"rootfs/1.1.0.img","target":"%s","version":"1.1.0","length":5000,"offset":5000}}}}`,
					img, phase, img)
			})
			d.updateTo("1.1.0")
			if _, ok := d.u.st.component("rootfs").Slots["c"]; ok {
				t.Error("the state still describes slot c, which is not configured")
			}
		})
	}
}

// TestArmedStateShortOfLength: an "armed" (or "verified") pending install
// whose offset is below its length was never verified whole; Confirm must
// not judge it (and blocklist a good release) when the boot control has no
// trial of it, and the next Install must transfer it again.
func TestArmedStateShortOfLength(t *testing.T) {
	for _, phase := range []Phase{PhaseVerified, PhaseArmed} {
		t.Run(string(phase), func(t *testing.T) {
			d := confirmedWithState(t, func(img string) string {
				return fmt.Sprintf(`{"version":1,"components":{"rootfs":{"installed":"1.0.0",
				"pending":{"phase":%q,"slot":"b","target_path":"rootfs/1.1.0.img","target":"%s","version":"1.1.0","length":5000,"offset":1000}}}}`,
					phase, img)
			})
			if bl := d.u.st.blocklist(); len(bl) != 0 {
				t.Fatalf("blocklist after Confirm: %+v, want empty", bl)
			}
			d.updateTo("1.1.0")
		})
	}
}

// publishRelease publishes 1.1.0, raw or compressed, and returns its image.
func publishRelease(repo *tuftest.Repo, compressed bool) []byte {
	img := compressible(7, 300_000)
	if compressed {
		repo.AddCompressedTarget("rootfs/1.1.0.img.zst", img, custom("1.1.0"), 64<<10)
	} else {
		repo.AddTarget("rootfs/1.1.0.img", img, custom("1.1.0"))
	}
	repo.Publish()
	return img
}

// TestLostStateFailedTrialIsBlocklisted: the state file is lost while a
// trial runs, and the trial fails its health checks. The release must be
// identified from the slot's content and blocklisted, not offered again.
func TestLostStateFailedTrialIsBlocklisted(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		t.Run(map[bool]string{false: "raw", true: "zstd"}[compressed], func(t *testing.T) {
			repo := tuftest.New(t)
			publishRelease(repo, compressed)
			d := newDevice(t, repo)
			if err := d.update(); err != nil {
				t.Fatalf("update: %v", err)
			}
			if err := d.boot.Reboot(); err != nil {
				t.Fatal(err)
			}
			d.loseState()
			d.healthy.Store(false)
			d.start()
			if err := d.u.Confirm(context.Background()); !errors.Is(err, ErrRolledBack) {
				t.Fatalf("Confirm of the failing trial: %v, want ErrRolledBack", err)
			}
			d.healthy.Store(true)
			if err := d.reboot(); err != nil {
				t.Fatalf("start after the rollback: %v", err)
			}
			bl := d.u.st.blocklist()
			if len(bl) != 1 || bl[0].Version != "1.1.0" {
				t.Errorf("blocklist %+v, want 1.1.0", bl)
			}
			ups, err := d.u.Check(context.Background())
			if len(ups) != 0 || !errors.Is(err, ErrNoUpdate) {
				t.Errorf("Check after the rollback: %d updates, %v; want the failed release not offered", len(ups), err)
			}
		})
	}
}

// TestLostStateCommittedDevice: the state file is lost after a release was
// committed. The device must not download its own version again over its
// fallback slot: what runs is identified by the slot's content.
func TestLostStateCommittedDevice(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		t.Run(map[bool]string{false: "raw", true: "zstd"}[compressed], func(t *testing.T) {
			repo := tuftest.New(t)
			img := publishRelease(repo, compressed)
			d := newDevice(t, repo)
			d.a.SetImage([]byte("factory image 1.0.0"))
			if err := d.update(); err != nil {
				t.Fatalf("update: %v", err)
			}
			if err := d.reboot(); err != nil {
				t.Fatalf("confirm: %v", err)
			}
			d.loseState()
			d.start()
			if err := d.u.Confirm(context.Background()); err != nil {
				t.Fatalf("Confirm: %v", err)
			}
			ups, err := d.u.Check(context.Background())
			if len(ups) != 0 || !errors.Is(err, ErrNoUpdate) {
				t.Fatalf("Check with the state lost: %d updates (%v), want none: 1.1.0 runs", len(ups), err)
			}
			if got := d.installed(); got != "1.1.0" {
				t.Errorf("installed %q, want 1.1.0", got)
			}
			sc := d.u.st.component("rootfs").Slots["b"]
			if !sc.Complete || sc.Version != "1.1.0" || sc.Image != sha(img) {
				t.Errorf("slot b rebuilt as %+v, want 1.1.0 complete with its image hash", sc)
			}
			if string(d.a.Bytes()) != "factory image 1.0.0" {
				t.Error("the fallback slot a was overwritten")
			}
			// Rebuilt once: the state file now says what the slots hold.
			if _, err := os.Stat(filepath.Join(d.stateDir, stateFile)); err != nil {
				t.Errorf("state not saved after the rebuild: %v", err)
			}
		})
	}
}
