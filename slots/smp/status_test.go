package smp

import (
	"encoding/hex"
	"errors"
	"slices"
	"testing"

	"github.com/switchback-ota/switchback/slots"
)

// TestDeriveStatus maps image states, as Zephyr's img_mgmt reports them
// in swap mode, onto slot names.
func TestDeriveStatus(t *testing.T) {
	h1, h2, h3 := []byte{1}, []byte{2}, []byte{3}
	rec := func(h []byte) slotRecord { return slotRecord{Hash: hex.EncodeToString(h), Version: "v"} }
	known := devState{Slots: map[string]slotRecord{"a": rec(h1), "b": rec(h2)}, Primary: "a"}
	armed := known
	armed.Trial, armed.Tries = "b", 2
	img := func(h []byte, confirmed, pending bool) *ImageInfo {
		return &ImageInfo{Hash: h, Version: "v", Confirmed: confirmed, Pending: pending}
	}
	for _, c := range []struct {
		name        string
		st          devState
		p, s        *ImageInfo
		want        slots.BootStatus
		wantPrimary string
		wantErr     error
	}{
		{"factory image adopted", devState{Slots: map[string]slotRecord{}, Primary: "a"}, img(h1, true, false), nil,
			slots.BootStatus{Booted: "a", Primary: "a"}, "a", nil},
		{"idle", known, img(h1, true, false), img(h2, false, false), slots.BootStatus{Booted: "a", Primary: "a"}, "a", nil},
		{"pending test", armed, img(h1, true, false), img(h2, false, true),
			slots.BootStatus{Booted: "a", Primary: "a", Trial: "b", TriesLeft: 2}, "a", nil},
		{"pending test the gateway forgot", known, img(h1, true, false), img(h2, false, true),
			slots.BootStatus{Booted: "a", Primary: "a", Trial: "b", TriesLeft: 1}, "a", nil},
		{"trial runs", armed, img(h2, false, false), img(h1, true, false),
			slots.BootStatus{Booted: "b", Primary: "a", Trial: "b", TriesLeft: 2}, "a", nil},
		{"trial runs, reporting another hash", armed, img(h3, false, false), img(h1, true, false),
			slots.BootStatus{Booted: "b", Primary: "a", Trial: "b", TriesLeft: 2}, "a", nil},
		{"reverted", armed, img(h1, true, false), img(h2, false, false),
			slots.BootStatus{Booted: "a", Primary: "a", Trial: "b"}, "a", nil},
		{"confirmed, commit not recorded", armed, img(h2, true, false), img(h1, false, false),
			slots.BootStatus{Booted: "b", Primary: "b"}, "b", nil},
		{"unknown image on test", known, img(h3, false, false), img(h1, true, false), slots.BootStatus{}, "", ErrUnknownImage},
		{"no primary image", known, nil, img(h1, true, false), slots.BootStatus{}, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			next, got, err := deriveStatus(c.st, c.p, c.s)
			if c.p == nil || c.wantErr != nil {
				if err == nil || c.wantErr != nil && !errors.Is(err, c.wantErr) {
					t.Errorf("got %+v, %v; want an error (%v)", got, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Booted != c.want.Booted || got.Primary != c.want.Primary || got.Trial != c.want.Trial ||
				got.TriesLeft != c.want.TriesLeft || !slices.Equal(got.Bad, c.want.Bad) {
				t.Errorf("status %+v, want %+v", got, c.want)
			}
			if next.Primary != c.wantPrimary || next.Slots[next.Primary].Hash != hex.EncodeToString(c.p.Hash) && c.p.Confirmed {
				t.Errorf("reconciled state %+v", next)
			}
		})
	}
}
