package attacks

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// TestArbitrarySoftware: the attacker serves bytes other than the signed
// ones for a release the device takes, or lists a release in metadata it
// cannot sign. Every byte is checked against the signed length and hash
// before the slot is armed.
func TestArbitrarySoftware(t *testing.T) {
	t.Parallel()
	attackerKey, err := repository.GenerateKey(repository.Ed25519)
	must(t, err)
	tests := []struct {
		name string
		// attack publishes release 1.2.0 (or pretends to) and tampers
		// with it; it returns the Update handed to Install, or nil to
		// let Check find one.
		attack func(t *testing.T, r *tuftest.Repo, d *device) *updater.Update
		want   []error
		writes writes
	}{
		{"replaced bytes of the signed length", func(t *testing.T, r *tuftest.Repo, d *device) *updater.Update {
			evil := bytes.Clone(release(r, "1.2.0"))
			copy(evil[100:], "malware")
			r.SetTargetBytes(targetPath("1.2.0"), evil)
			return nil
		}, []error{verify.ErrVerification}, someWrites},
		{"signed bytes with malware appended", func(t *testing.T, r *tuftest.Repo, d *device) *updater.Update {
			img := release(r, "1.2.0")
			r.SetTargetBytes(targetPath("1.2.0"), append(bytes.Clone(img), "malware"...))
			return nil
		}, []error{download.ErrLength}, noWrites},
		{"truncated bytes", func(t *testing.T, r *tuftest.Repo, d *device) *updater.Update {
			img := release(r, "1.2.0")
			r.SetTargetBytes(targetPath("1.2.0"), img[:len(img)/2])
			return nil
		}, []error{download.ErrLength}, noWrites},
		{"compressed release with a replaced stream", func(t *testing.T, r *tuftest.Repo, d *device) *updater.Update {
			img := bytes.Repeat([]byte("compressible 1.2.0 "), 2000)
			tg := r.AddCompressedTarget("rootfs/1.2.0.img.zst", img, custom("1.2.0"), 8<<10)
			r.Publish()
			// Another image, compressed and padded to the signed length
			// with a skippable frame: a well-formed zstd stream of the
			// right size.
			evil := compressLike(t, bytes.Repeat([]byte("MALWARE 6.6.6 "), 2800), tg.Length)
			r.SetFile("targets/"+tg.File, evil)
			return nil
		}, []error{verify.ErrVerification}, someWrites},
		{"release in targets metadata signed by the attacker", func(t *testing.T, r *tuftest.Repo, d *device) *updater.Update {
			release(r, "1.2.0")
			evil := bytes.Repeat([]byte{0x66}, imageSize)
			sum := tuftest.SHA256(evil)
			r.Forge(repository.RoleTargets, func(s any) {
				tf := s.(*metadata.TargetsType).Targets[targetPath("1.2.0")]
				tf.Hashes["sha256"], _ = hex.DecodeString(sum)
			}, attackerKey)
			r.SetFile("targets/rootfs/"+sum+".1.2.0.img", evil)
			return nil
		}, []error{verify.ErrUntrusted, &metadata.ErrUnsignedMetadata{}}, noWrites},
		{"Install handed a release the metadata does not list", func(t *testing.T, r *tuftest.Repo, d *device) *updater.Update {
			evil := bytes.Repeat([]byte{0x66}, imageSize)
			sum := tuftest.SHA256(evil)
			r.SetFile("targets/rootfs/"+sum+".6.6.6.img", evil)
			raw, _ := hex.DecodeString(sum)
			return &updater.Update{Component: "rootfs", From: "1.0.0", To: "6.6.6", Target: verify.Target{
				Path: "rootfs/6.6.6.img", Length: imageSize, Hashes: map[string][]byte{"sha256": raw},
				Custom: custom("6.6.6"), URL: r.TargetsURL() + "rootfs/" + sum + ".6.6.6.img",
			}}
		}, []error{verify.ErrVerification}, noWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, d := trustingDevice(t)
			before := d.snap()
			up := tt.attack(t, r, d)
			var err error
			if up == nil {
				err = d.update(context.Background())
			} else {
				err = d.u.Install(context.Background(), *up)
			}
			wantErr(t, "update", err, tt.want...)
			d.assertRefused(before, tt.writes)
			r.ClearOverrides()
			d.honestUpdate("1.3.0")
		})
	}
}
