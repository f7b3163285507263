package attacks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// TestWrongHardware: a genuine, signed release for other hardware (a
// mistake in the release pipeline, or a repository shared by a fleet) is
// never offered: Check fails with ErrNoUpdate and verify.ErrIncompatible
// naming the hardware, the bytes are never requested, and the device
// takes the next release built for it.
func TestWrongHardware(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		hardware []string
	}{
		{"other board", []string{"other-board"}},
		{"several other boards", []string{"gw-attack-v2", "GW-ATTACK", "gw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, d := trustingDevice(t)
			c := custom("1.2.0")
			c.Hardware = tt.hardware
			r.AddTarget(targetPath("1.2.0"), image("1.2.0"), c)
			r.Publish()
			d.updateRefused("update", updater.ErrNoUpdate, verify.ErrIncompatible)
			if n := r.Requests(targetFile(r, "1.2.0")); n != 0 {
				t.Errorf("the other hardware's image was requested %d times", n)
			}
			d.honestUpdate("1.3.0")
		})
	}

	// Install takes an Update, which an application may have received
	// from anywhere (a fleet server's push, a file): the signed release
	// for other hardware, with the hardware list in the Update rewritten.
	t.Run("Install handed the release with its hardware rewritten", func(t *testing.T) {
		t.Parallel()
		r := tuftest.New(t)
		d := newDevice(t, r, nil)
		c := custom("1.2.0")
		c.Hardware = []string{"other-board"}
		r.AddTarget(targetPath("1.2.0"), image("1.2.0"), c)
		r.Publish()
		d.trust()
		tg := r.Target(targetPath("1.2.0"))
		up := updater.Update{Component: "rootfs", From: "1.0.0", To: "1.2.0", Target: verify.Target{
			Path: tg.Path, Length: tg.Length, Hashes: map[string][]byte{"sha256": unhex(tg.SHA256)},
			Custom: custom("1.2.0"), URL: r.TargetsURL() + tg.File,
		}}
		before := d.snap()
		err := d.u.Install(context.Background(), up)
		wantErr(t, "Install", err, verify.ErrIncompatible)
		d.assertRefused(before, noWrites)
		d.honestUpdate("1.3.0")
	})
}

// badCustom publishes, each at rootfs/bad-<n>.img, signed targets whose
// custom metadata is raw ("": none), all at once and for a version newer
// than anything else, and checks that the device ignores every one: Check
// fails with ErrNoUpdate (not ErrIncompatible: none is a release at all),
// nothing is written or activated; then, one subtest per case, that the
// updater rejected the target with verify.ErrBadCustom and never
// requested its bytes. Finally the device takes the next valid release
// while the bad targets are still listed.
func badCustom(t *testing.T, cases []customCase) {
	r, d := trustingDevice(t)
	for i, c := range cases {
		var raw json.RawMessage
		if c.raw != "" {
			raw = json.RawMessage(c.raw)
		}
		r.AddTarget(fmt.Sprintf("rootfs/bad-%d.img", i), image("9.9.9"), raw)
	}
	r.Publish()
	if err := d.updateRefused("update", updater.ErrNoUpdate); errors.Is(err, verify.ErrIncompatible) {
		t.Errorf("update: %v: a bad target was taken for a release", err)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := fmt.Sprintf("rootfs/bad-%d.img", i)
			if err := d.logs.rejected(path); !errors.Is(err, verify.ErrBadCustom) {
				t.Errorf("target rejected with %v, want ErrBadCustom", err)
			}
			if n := r.Requests("targets/" + r.Target(path).File); n != 0 {
				t.Errorf("the target's bytes were requested %d times", n)
			}
		})
	}
	d.honestUpdate("1.1.0")
}

// customCase is raw custom metadata ("": none) and what is wrong with it.
type customCase struct {
	name, raw string
}

// TestCustomMetadataMissing: a signed target without the switchback
// custom metadata, or without one of its required fields.
func TestCustomMetadataMissing(t *testing.T) {
	t.Parallel()
	badCustom(t, []customCase{
		{"no custom metadata", ""},
		{"empty object", `{}`},
		{"component missing", `{"version":"9.9.9","hardware":["gw-attack"]}`},
		{"version missing", `{"component":"rootfs","hardware":["gw-attack"]}`},
		{"hardware missing", `{"component":"rootfs","version":"9.9.9"}`},
		{"hardware empty", `{"component":"rootfs","version":"9.9.9","hardware":[]}`},
		{"uncompressed digest missing on a zstd target", `{"component":"rootfs","version":"9.9.9","hardware":["gw-attack"],"compression":"zstd"}`},
		{"patch without its base", `{"component":"rootfs","version":"9.9.9","hardware":["gw-attack"],"kind":"patch","of":"rootfs/9.9.9.img","format":"bsdiff","uncompressed":{"length":4096,"sha256":"` + zeros + `"}}`},
		{"switchback fields nested, not at the top level", `{"switchback":{"component":"rootfs","version":"9.9.9","hardware":["gw-attack"]}}`},
	})
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"

// TestCustomMetadataMalformed: a signed target whose switchback custom
// metadata is present but malformed: wrong JSON types, versions that are
// not semantic versions, unknown compression or kind, bad digests.
func TestCustomMetadataMalformed(t *testing.T) {
	t.Parallel()
	badCustom(t, []customCase{
		{"not an object", `["rootfs","9.9.9"]`},
		{"a string", `"rootfs 9.9.9"`},
		{"version a number", `{"component":"rootfs","version":999,"hardware":["gw-attack"]}`},
		{"version not semantic", `{"component":"rootfs","version":"9.9","hardware":["gw-attack"]}`},
		{"version garbage", `{"component":"rootfs","version":"latest","hardware":["gw-attack"]}`},
		{"hardware a string", `{"component":"rootfs","version":"9.9.9","hardware":"gw-attack"}`},
		{"hardware with an empty id", `{"component":"rootfs","version":"9.9.9","hardware":["gw-attack",""]}`},
		{"min_version not semantic", `{"component":"rootfs","version":"9.9.9","hardware":["gw-attack"],"min_version":"one"}`},
		{"component with a path separator", `{"component":"rootfs/../app","version":"9.9.9","hardware":["gw-attack"]}`},
		{"unknown compression", `{"component":"rootfs","version":"9.9.9","hardware":["gw-attack"],"compression":"lz4","uncompressed":{"length":4096,"sha256":"` + zeros + `"}}`},
		{"uncompressed sha256 not hex", `{"component":"rootfs","version":"9.9.9","hardware":["gw-attack"],"compression":"zstd","uncompressed":{"length":4096,"sha256":"xyz"}}`},
		{"uncompressed length negative", `{"component":"rootfs","version":"9.9.9","hardware":["gw-attack"],"compression":"zstd","uncompressed":{"length":-1,"sha256":"` + zeros + `"}}`},
		{"uncompressed length a string", `{"component":"rootfs","version":"9.9.9","hardware":["gw-attack"],"compression":"zstd","uncompressed":{"length":"4096","sha256":"` + zeros + `"}}`},
		{"unknown kind", `{"component":"rootfs","version":"9.9.9","hardware":["gw-attack"],"kind":"firmware"}`},
	})
}
