package sdboot

import (
	"testing"
)

func TestParseEntryName(t *testing.T) {
	tests := []struct {
		in      string
		want    EntryName
		wantErr bool
	}{
		{in: "switchback-a.conf", want: EntryName{ID: "switchback-a.conf", Done: -1}},
		{in: "switchback-a+3.conf", want: EntryName{ID: "switchback-a.conf", Counting: true, Left: 3, Done: -1}},
		{in: "switchback-a+2-1.conf", want: EntryName{ID: "switchback-a.conf", Counting: true, Left: 2, Done: 1}},
		{in: "switchback-a+0-3.conf", want: EntryName{ID: "switchback-a.conf", Counting: true, Left: 0, Done: 3}},
		{in: "a+b+1.CONF", want: EntryName{ID: "a+b.CONF", Counting: true, Left: 1, Done: -1}},
		{in: "a+x.conf", want: EntryName{ID: "a+x.conf", Done: -1}},
		{in: "a+1-.conf", want: EntryName{ID: "a+1-.conf", Done: -1}},
		{in: "a+-1.conf", want: EntryName{ID: "a+-1.conf", Done: -1}},
		{in: "a+1-2-3.conf", want: EntryName{ID: "a+1-2-3.conf", Done: -1}},
		{in: "+1.conf", wantErr: true},
		{in: "a.txt", wantErr: true},
		{in: ".conf", wantErr: true},
		{in: "a/b.conf", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseEntryName(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseEntryName(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseEntryName(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("ParseEntryName(%q).String() = %q", tt.in, got.String())
		}
	}
}

// The renames of systemd-boot (a try) and systemd-bless-boot (good, bad).
func TestEntryTransitions(t *testing.T) {
	tests := []struct {
		in, tried, blessed, cursed string
	}{
		{"e+3.conf", "e+2-1.conf", "e.conf", "e+0.conf"},
		{"e+2-1.conf", "e+1-2.conf", "e.conf", "e+0-1.conf"},
		{"e+0-3.conf", "e+0-3.conf", "e.conf", "e+0-3.conf"},
		{"e.conf", "e.conf", "e.conf", "e+0.conf"},
	}
	for _, tt := range tests {
		n, err := ParseEntryName(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Tried().String(); got != tt.tried {
			t.Errorf("%s tried: %s, want %s", tt.in, got, tt.tried)
		}
		if got := n.Blessed().String(); got != tt.blessed {
			t.Errorf("%s good: %s, want %s", tt.in, got, tt.blessed)
		}
		if got := n.Cursed().String(); got != tt.cursed {
			t.Errorf("%s bad: %s, want %s", tt.in, got, tt.cursed)
		}
	}
}

func FuzzParseEntryName(f *testing.F) {
	for _, s := range []string{"switchback-a.conf", "x+3.conf", "x+2-1.conf", "a+b+0-9.CONF", "+1.conf", "a+01.conf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseEntryName(s)
		if err != nil {
			return
		}
		again, err := ParseEntryName(n.String())
		if err != nil || again != n {
			t.Fatalf("round trip of %q: %+v -> %q -> %+v, %v", s, n, n.String(), again, err)
		}
		if n.Counting && (n.Left < 0 || n.Done < -1) {
			t.Fatalf("negative counter in %+v", n)
		}
		for _, m := range []EntryName{n.Tried(), n.Blessed(), n.Cursed()} {
			if m.ID != n.ID {
				t.Fatalf("transition changed the id: %+v -> %+v", n, m)
			}
			if _, err := ParseEntryName(m.String()); err != nil {
				t.Fatalf("transition of %q gives %q: %v", s, m.String(), err)
			}
		}
	})
}
