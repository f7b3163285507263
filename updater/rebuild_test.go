package updater

import (
	"context"
	"testing"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/slotstest"
	"github.com/switchback-ota/switchback/verify"
)

func TestReconcile(t *testing.T) {
	comps := []Component{{Name: "rootfs", Slots: []slots.Slot{slotstest.NewMemSlot("a", 1), slotstest.NewMemSlot("b", 1)}}}
	tests := []struct {
		name        string
		pending     *pending
		slots       map[string]slotContent
		wantPending *pending // nil: dropped
		wantSlots   []string
		wantWarn    bool
	}{
		{name: "consistent download", pending: &pending{Phase: PhaseDownloading, Slot: "b", Offset: 4, Length: 10, HashState: []byte{1}},
			wantPending: &pending{Phase: PhaseDownloading, Slot: "b", Offset: 4, Length: 10}, wantSlots: nil},
		{name: "consistent trial", pending: &pending{Phase: PhaseArmed, Slot: "b", Offset: 10, Length: 10},
			wantPending: &pending{Phase: PhaseArmed, Slot: "b", Offset: 10, Length: 10}},
		{name: "pending in an unknown slot", pending: &pending{Phase: PhaseArmed, Slot: "c", Offset: 10, Length: 10}, wantWarn: true},
		{name: "record of an unknown slot", slots: map[string]slotContent{"a": {Complete: true}, "z": {Complete: true}},
			wantSlots: []string{"a"}, wantWarn: true},
		{name: "armed short of its length", pending: &pending{Phase: PhaseArmed, Method: methodPatch, Slot: "b", Offset: 3, Length: 10, WireOffset: 2},
			slots:       map[string]slotContent{"b": {Complete: true}},
			wantPending: &pending{Phase: PhaseDownloading, Slot: "b", Offset: 0, Length: 10}, wantSlots: []string{"b"}, wantWarn: true},
		{name: "verified short of its length", pending: &pending{Phase: PhaseVerified, Slot: "a", Offset: 0, Length: 10},
			wantPending: &pending{Phase: PhaseDownloading, Slot: "a", Offset: 0, Length: 10}, wantSlots: []string{"a"}, wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &store{p: newPersisted()}
			cs := s.component("rootfs")
			cs.Pending = tt.pending
			for k, v := range tt.slots {
				cs.Slots[k] = v
			}
			warnings := s.reconcile(comps)
			if got := len(warnings) > 0; got != tt.wantWarn {
				t.Errorf("warnings %q, want some: %v", warnings, tt.wantWarn)
			}
			pd := cs.Pending
			switch {
			case tt.wantPending == nil && pd != nil:
				t.Errorf("pending %+v, want it dropped", pd)
			case tt.wantPending != nil && pd == nil:
				t.Errorf("pending dropped, want %+v", tt.wantPending)
			case pd != nil:
				w := tt.wantPending
				if pd.Phase != w.Phase || pd.Slot != w.Slot || pd.Offset != w.Offset || pd.Length != w.Length {
					t.Errorf("pending %+v, want %+v", pd, w)
				}
				if pd.Phase == PhaseDownloading && pd.Offset == 0 && (pd.Method != "" || pd.WireOffset != 0 || pd.HashState != nil) {
					t.Errorf("pending %+v keeps transfer progress", pd)
				}
				if tt.pending.Offset != pd.Offset && cs.Slots[pd.Slot].Complete {
					t.Errorf("slot %s still recorded complete", pd.Slot)
				}
			}
			for name := range cs.Slots {
				found := false
				for _, w := range tt.wantSlots {
					found = found || w == name
				}
				if !found {
					t.Errorf("slot record %q kept", name)
				}
			}
		})
	}
}

func TestIdentify(t *testing.T) {
	short, long := image("1.1.0", 3000), image("1.2.0", 9000)
	long = append(append([]byte{}, short...), long[len(short):]...) // short is a prefix of long
	other := image("2.0.0", 5000)
	target := func(version string, img []byte) verify.Target {
		return verify.Target{Path: "rootfs/" + version, Length: int64(len(img)), Hashes: map[string][]byte{"sha256": mustHex(sha(img))},
			Custom: verify.Custom{Component: "rootfs", Version: version}}
	}
	all := []verify.Target{target("1.1.0", short), target("1.2.0", long), target("2.0.0", other)}
	tests := []struct {
		name       string
		slot       []byte // nil: empty slot
		candidates []verify.Target
		want       string // version, "" for no match
	}{
		{"exact image", other, all, "2.0.0"},
		{"image then the rest of a partition", append(append([]byte{}, other...), make([]byte, 4096)...), all, "2.0.0"},
		{"the longest of two matches", long, all, "1.2.0"},
		{"shorter than every image", short[:100], all, ""},
		{"unknown content", image("9.9.9", 9000), all, ""},
		{"empty slot", nil, all, ""},
		{"no candidates", other, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := slotstest.NewMemSlot("a", 1<<20)
			if tt.slot != nil {
				s.SetImage(tt.slot)
			}
			got, ok, err := identify(context.Background(), s, tt.candidates)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tt.want != "") || got.Custom.Version != tt.want {
				t.Errorf("identified %q (%v), want %q", got.Custom.Version, ok, tt.want)
			}
		})
	}
}
