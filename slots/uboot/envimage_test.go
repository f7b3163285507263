package uboot

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var abVars = []Var{
	{"bootcmd", "run sb_boot_linux"}, {"sb_bad", ""}, {"sb_canary", "0123456789abcdef"},
	{"sb_primary", "a"}, {"sb_tries", "3"}, {"sb_trial", "b"},
}

func TestParseImageFixtures(t *testing.T) {
	tests := []struct {
		file      string
		redundant bool
		flags     byte
		want      []Var
	}{
		{"ab-single.bin", false, 0, abVars},
		{"ab-redund.bin", true, 1, abVars},
		{"mixed-pad0.bin", false, 0, []Var{{"b", "2"}, {"a", "1"}, {"multi", "x\ny"}}},
		{"fwsetenv-single.bin", false, 0, []Var{{"bootcmd", "run sb_boot_linux"}, {"new_var", "hello world"}, {"sb_bad", ""}, {"sb_canary", "0123456789abcdef"}, {"sb_primary", "b"}}},
		{"fwsetenv-redund-0.bin", true, 3, []Var{{"bootcmd", "run sb_boot_linux"}, {"sb_bad", ""}, {"sb_canary", "0123456789abcdef"}, {"sb_primary", "b"}, {"sb_trial", "b"}, {"sb_tries", "2"}}},
		{"fwsetenv-redund-1.bin", true, 4, []Var{{"bootcmd", "run sb_boot_linux"}, {"sb_bad", ""}, {"sb_canary", "ffff"}, {"sb_primary", "b"}, {"sb_trial", "b"}, {"sb_tries", "2"}}},
	}
	for _, tt := range tests {
		img, err := ParseImage(readFixture(t, tt.file), tt.redundant)
		if err != nil {
			t.Errorf("ParseImage(%s): %v", tt.file, err)
			continue
		}
		if !reflect.DeepEqual(img.Vars, tt.want) || img.Flags != tt.flags {
			t.Errorf("ParseImage(%s) = %q flags %d, want %q flags %d", tt.file, img.Vars, img.Flags, tt.want, tt.flags)
		}
		// Read as the other layout, the CRC does not match.
		if _, err := ParseImage(readFixture(t, tt.file), !tt.redundant); !errors.Is(err, ErrBadCRC) {
			t.Errorf("ParseImage(%s, redundant=%v): got %v, want ErrBadCRC", tt.file, !tt.redundant, err)
		}
	}
}

// EncodeImage with mkenvimage's padding gives mkenvimage's bytes.
func TestEncodeMatchesMkenvimage(t *testing.T) {
	tests := []struct {
		file      string
		vars      []Var
		redundant bool
		flags     byte
		pad       byte
	}{
		{"ab-single.bin", abVars, false, 0, 0xff},
		{"ab-redund.bin", abVars, true, 1, 0xff},
		{"mixed-pad0.bin", []Var{{"b", "2"}, {"a", "1"}, {"multi", "x\ny"}}, false, 0, 0},
	}
	for _, tt := range tests {
		got, err := EncodeImage(tt.vars, 0x400, tt.redundant, tt.flags, tt.pad)
		if err != nil {
			t.Fatal(err)
		}
		if want := readFixture(t, tt.file); !bytes.Equal(got, want) {
			t.Errorf("EncodeImage for %s: bytes differ\ngot  %q\nwant %q", tt.file, got[:64], want[:64])
		}
	}
}

// Set orders variables as libubootenv does, so the data we write after
// fw_setenv's changes is what fw_setenv wrote (up to the terminator; it
// leaves its buffer's garbage after it).
func TestSetMatchesFwSetenv(t *testing.T) {
	img, err := ParseImage(readFixture(t, "ab-single.bin"), false)
	if err != nil {
		t.Fatal(err)
	}
	vars := img.Vars
	for _, c := range [][2]string{{"sb_primary", "b"}, {"sb_trial", ""}, {"sb_tries", ""}, {"new_var", "hello world"}} {
		if vars, err = Set(vars, c[0], c[1]); err != nil {
			t.Fatal(err)
		}
	}
	got, err := EncodeImage(vars, 0x400, false, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := readFixture(t, "fwsetenv-single.bin")
	end := bytes.Index(want[4:], []byte{0, 0}) + 4 + 2
	if !bytes.Equal(got[4:end], want[4:end]) {
		t.Errorf("data differs from fw_setenv's:\ngot  %q\nwant %q", got[4:end], want[4:end])
	}
}

func TestSetOrder(t *testing.T) {
	var vars []Var
	var err error
	for _, n := range []string{"m", "c", "x", "a", "c"} {
		if vars, err = Set(vars, n, n+"v"); err != nil {
			t.Fatal(err)
		}
	}
	want := []Var{{"a", "av"}, {"c", "cv"}, {"m", "mv"}, {"x", "xv"}}
	if !reflect.DeepEqual(vars, want) {
		t.Errorf("Set order: %q, want %q", vars, want)
	}
	if vars, _ = Set(vars, "c", ""); len(vars) != 3 {
		t.Errorf("Set(c, \"\") did not remove: %q", vars)
	}
	for _, n := range []string{"", "a=b", "a\x00"} {
		if _, err := Set(nil, n, "v"); err == nil {
			t.Errorf("Set(%q): got nil error", n)
		}
	}
	if _, err := Set(nil, "a", "v\x00"); err == nil {
		t.Errorf("Set with a NUL in the value: got nil error")
	}
}

func TestParseImageErrors(t *testing.T) {
	good, _ := EncodeImage([]Var{{"a", "1"}}, 64, false, 0, 0)
	torn := bytes.Clone(good)
	torn[10] ^= 1
	unterminated := bytes.Repeat([]byte("x"), 64)
	for name, b := range map[string][]byte{"short": good[:4], "torn": torn, "zeros": make([]byte, 64)} {
		if _, err := ParseImage(b, false); err == nil {
			t.Errorf("ParseImage(%s): got nil error", name)
		}
	}
	// Valid CRC over data with no terminator.
	b := withCRC(unterminated)
	if _, err := ParseImage(b, false); err == nil || errors.Is(err, ErrBadCRC) {
		t.Errorf("ParseImage(unterminated): got %v, want a termination error", err)
	}
	if _, err := EncodeImage([]Var{{"a", string(bytes.Repeat([]byte("v"), 100))}}, 64, false, 0, 0); !errors.Is(err, ErrNoSpace) {
		t.Errorf("EncodeImage too big: got %v, want ErrNoSpace", err)
	}
}

func TestPickCopy(t *testing.T) {
	tests := []struct {
		valid [2]bool
		flags [2]byte
		want  int
		ok    bool
	}{
		{[2]bool{true, false}, [2]byte{1, 9}, 0, true},
		{[2]bool{false, true}, [2]byte{9, 1}, 1, true},
		{[2]bool{false, false}, [2]byte{1, 2}, 0, false},
		{[2]bool{true, true}, [2]byte{1, 2}, 1, true},
		{[2]bool{true, true}, [2]byte{3, 2}, 0, true},
		{[2]bool{true, true}, [2]byte{5, 5}, 0, true},
		{[2]bool{true, true}, [2]byte{255, 0}, 1, true},
		{[2]bool{true, true}, [2]byte{0, 255}, 0, true},
	}
	for _, tt := range tests {
		got, ok := pickCopy(tt.valid, tt.flags)
		if got != tt.want || ok != tt.ok {
			t.Errorf("pickCopy(%v, %v) = %d, %v, want %d, %v", tt.valid, tt.flags, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseUbootEnv(f *testing.F) {
	for _, n := range []string{"ab-single.bin", "ab-redund.bin", "mixed-pad0.bin"} {
		f.Add(readFixture(f, n), n == "ab-redund.bin")
	}
	f.Add(withCRC([]byte("x=1\x00=\x00noeq\x00\x00")), false)
	f.Fuzz(func(t *testing.T, b []byte, redundant bool) {
		// Give the data a valid CRC half the time, so the parser runs.
		if len(b) > 8 && b[len(b)-1]&1 == 0 {
			b = withCRCLayout(b, redundant)
		}
		img, err := ParseImage(b, redundant)
		if err != nil {
			return
		}
		for _, v := range img.Vars {
			if CheckVar(v.Name, v.Value) != nil && v.Name != "" {
				t.Fatalf("parsed an unstorable variable %q", v)
			}
		}
		var ok []Var
		for _, v := range img.Vars {
			if v.Name != "" {
				ok = append(ok, v)
			}
		}
		out, err := EncodeImage(ok, len(b)+64, redundant, img.Flags, 0)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		img2, err := ParseImage(out, redundant)
		if err != nil || !reflect.DeepEqual(img2.Vars, ok) {
			t.Fatalf("round trip: %v, %q, want %q", err, img2.Vars, ok)
		}
	})
}

func withCRC(data []byte) []byte { return withCRCLayout(append(make([]byte, 4), data...), false) }

func withCRCLayout(b []byte, redundant bool) []byte {
	b = bytes.Clone(b)
	h := header(redundant)
	if len(b) < h {
		return b
	}
	putCRC(b, h)
	return b
}
