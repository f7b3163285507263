package grub

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The fixtures were written by grub-editenv (GRUB 2.06, Debian 12); see
// testdata/README.
func TestParseFixtures(t *testing.T) {
	tests := []struct {
		file string
		want []Var
	}{
		{"empty.grubenv", nil},
		{"ab.grubenv", []Var{{"sb_primary", "a"}, {"sb_bad", ""}, {"sb_canary", "0123456789abcdef"}, {"sb_tries", "3"}, {"sb_trial", "b"}}},
		{"committed.grubenv", []Var{{"sb_primary", "b"}, {"sb_bad", ""}, {"sb_canary", "fedcba9876543210"}, {"sb_tries", ""}, {"sb_trial", ""}}},
		{"escapes.grubenv", []Var{{"path", `C:\boot\x`}, {"multi", "one\ntwo"}, {"trail", `\`}, {"a", "b=c"}}},
		{"unset.grubenv", []Var{{"path", `C:\boot\x`}, {"trail", `\`}, {"a", "b=c"}}},
	}
	for _, tt := range tests {
		e, err := Parse(readFixture(t, tt.file))
		if err != nil {
			t.Errorf("Parse(%s): %v", tt.file, err)
			continue
		}
		if got := e.Vars(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%s).Vars() = %q, want %q", tt.file, got, tt.want)
		}
		if e.Damaged() {
			t.Errorf("Parse(%s).Damaged() = true", tt.file)
		}
		if e.Size() != BlockSize {
			t.Errorf("Parse(%s).Size() = %d, want %d", tt.file, e.Size(), BlockSize)
		}
	}
	full, err := Parse(readFixture(t, "full.grubenv"))
	if err != nil {
		t.Fatal(err)
	}
	if got := len(full.Vars()); got != 62 {
		t.Errorf("full.grubenv: %d variables, want 62", got)
	}
}

// Our edits of a block are byte for byte those of grub-editenv: the same
// sequence of changes applied to the tool's empty block gives the tool's
// file.
func TestEditsMatchGrubEditenv(t *testing.T) {
	type op struct {
		name, value string
		unset       bool
	}
	tests := []struct {
		from, want string
		ops        []op
	}{
		{"empty.grubenv", "ab.grubenv", []op{{"sb_primary", "a", false}, {"sb_bad", "", false}, {"sb_canary", "0123456789abcdef", false}, {"sb_tries", "3", false}, {"sb_trial", "b", false}}},
		{"ab.grubenv", "committed.grubenv", []op{{"sb_primary", "b", false}, {"sb_bad", "", false}, {"sb_canary", "fedcba9876543210", false}, {"sb_tries", "", false}, {"sb_trial", "", false}}},
		{"empty.grubenv", "escapes.grubenv", []op{{"path", `C:\boot\x`, false}, {"multi", "one\ntwo", false}, {"trail", `\`, false}, {"a", "b=c", false}}},
		{"escapes.grubenv", "unset.grubenv", []op{{"multi", "", true}}},
	}
	for _, tt := range tests {
		e, err := Parse(readFixture(t, tt.from))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range tt.ops {
			if o.unset {
				err = e.Unset(o.name)
			} else {
				err = e.Set(o.name, o.value)
			}
			if err != nil {
				t.Fatalf("%s: %+v: %v", tt.from, o, err)
			}
		}
		if got, want := e.Encode(), readFixture(t, tt.want); !bytes.Equal(got, want) {
			t.Errorf("%s edited to %s: bytes differ\ngot  %q\nwant %q", tt.from, tt.want, got, want)
		}
	}
	// The 63rd variable does not fit in full.grubenv, as grub-editenv found.
	full, err := Parse(readFixture(t, "full.grubenv"))
	if err != nil {
		t.Fatal(err)
	}
	if err := full.Set("v63", "0000000063"); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Set in a full block: got %v, want ErrNoSpace", err)
	}
	if !bytes.Equal(full.Encode(), readFixture(t, "full.grubenv")) {
		t.Errorf("a failed Set changed the block")
	}
}

func TestSetShrinkGrow(t *testing.T) {
	e, err := NewEnv(BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct{ name, value string }{
		{"x", "1"}, {"y", "2"}, {"x", "longer value"}, {"x", ""}, {"y", "a\\b\nc"}, {"z", "3"},
	}
	want := map[string]string{}
	for _, s := range steps {
		if err := e.Set(s.name, s.value); err != nil {
			t.Fatal(err)
		}
		want[s.name] = s.value
		if got := e.Map(); !reflect.DeepEqual(got, want) {
			t.Fatalf("after Set(%q, %q): %q, want %q", s.name, s.value, got, want)
		}
		if e.Size() != BlockSize || e.Damaged() {
			t.Fatalf("after Set(%q, %q): size %d, damaged %v", s.name, s.value, e.Size(), e.Damaged())
		}
	}
	if got := e.Vars(); got[0].Name != "x" || got[1].Name != "y" || got[2].Name != "z" {
		t.Errorf("order %q, want x y z", got)
	}
	if err := e.Unset("y"); err != nil {
		t.Fatal(err)
	}
	delete(want, "y")
	if got := e.Map(); !reflect.DeepEqual(got, want) {
		t.Errorf("after Unset: %q, want %q", got, want)
	}
	if err := e.Unset("nope"); err != nil {
		t.Errorf("Unset of a missing variable: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		[]byte("# GRUB Environment Block"),
		[]byte("# GRUB Environment Block\n"),
		[]byte("# Not GRUB\nx=1\n####"),
		bytes.Repeat([]byte("#"), maxBlock+1),
	} {
		if _, err := Parse(b); err == nil {
			t.Errorf("Parse(%.40q): got nil error", b)
		}
	}
	for _, n := range []string{"", "a=b", "a\nb", "#a", `a\b`} {
		e, _ := NewEnv(BlockSize)
		if err := e.Set(n, "v"); err == nil {
			t.Errorf("Set(%q): got nil error", n)
		}
	}
}

func TestDamagedAndDuplicates(t *testing.T) {
	// A torn write can leave a line without its newline, and duplicates.
	raw := Header + "sb_primary=a\nsb_trial=b\nsb_primary=b\nsb_tri"
	raw += strings.Repeat("#", 0)
	e, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !e.Damaged() {
		t.Errorf("Damaged() = false for a block with a cut line")
	}
	if got, _ := e.Get("sb_primary"); got != "b" {
		t.Errorf("Get(sb_primary) = %q, want the last occurrence b (what GRUB's load_env keeps)", got)
	}
	if err := e.Set("x", "1"); err == nil {
		t.Errorf("Set on a damaged block: got nil error")
	}
	if err := e.Repair(); err != nil {
		t.Fatal(err)
	}
	if e.Damaged() {
		t.Errorf("Damaged() after Repair")
	}
	if got, want := e.Map(), map[string]string{"sb_primary": "b", "sb_trial": "b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Repair: %q, want %q", got, want)
	}
	// Set of a duplicated name leaves one line.
	d, _ := Parse([]byte(Header + "k=1\nk=2\n" + strings.Repeat("#", 100)))
	if err := d.Set("k", "3"); err != nil {
		t.Fatal(err)
	}
	if got := d.Vars(); !reflect.DeepEqual(got, []Var{{"k", "3"}}) {
		t.Errorf("Set of a duplicate: %q, want one k=3", got)
	}
}

func FuzzParseGrubEnv(f *testing.F) {
	for _, name := range []string{"empty.grubenv", "ab.grubenv", "escapes.grubenv", "full.grubenv"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "sb_tries", "2")
	}
	f.Add([]byte(Header+"a=\\"), "a", "x\ny")
	f.Add([]byte(Header+"=\n#"), "b", "")
	f.Fuzz(func(t *testing.T, b []byte, name, value string) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		e.Vars()
		before := e.Size()
		if e.Damaged() {
			if err := e.Repair(); err != nil {
				return
			}
			if e.Damaged() {
				t.Fatalf("damaged after Repair: %q", e.Encode())
			}
		}
		if err := e.Set(name, value); err != nil {
			return
		}
		if e.Size() != before {
			t.Fatalf("size changed from %d to %d", before, e.Size())
		}
		if got, ok := e.Get(name); !ok || got != value {
			t.Fatalf("after Set(%q, %q): Get = %q, %v", name, value, got, ok)
		}
		e2, err := Parse(e.Encode())
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if fmt.Sprint(e2.Vars()) != fmt.Sprint(e.Vars()) {
			t.Fatalf("re-parse differs")
		}
		if err := e.Unset(name); err != nil {
			t.Fatalf("Unset(%q): %v", name, err)
		}
		if _, ok := e.Get(name); ok {
			t.Fatalf("%q still set after Unset", name)
		}
	})
}
