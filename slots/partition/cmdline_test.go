package partition

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		in      string
		want    Cmdline
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "  \n", want: nil},
		{in: "quiet", want: Cmdline{{Key: "quiet"}}},
		{in: "root=/dev/sda2 ro quiet\n", want: Cmdline{
			{Key: "root", Value: "/dev/sda2", HasValue: true}, {Key: "ro"}, {Key: "quiet"}}},
		{in: "root=PARTUUID=1234-abcd switchback.slot=b", want: Cmdline{
			{Key: "root", Value: "PARTUUID=1234-abcd", HasValue: true},
			{Key: "switchback.slot", Value: "b", HasValue: true}}},
		{in: `a="x y" b=""`, want: Cmdline{{Key: "a", Value: "x y", HasValue: true}, {Key: "b", HasValue: true}}},
		{in: `"a=x y"`, want: Cmdline{{Key: "a", Value: "x y", HasValue: true}}},
		{in: "a= b", want: Cmdline{{Key: "a", HasValue: true}, {Key: "b"}}},
		{in: "a=1 -- init=2 b=3", want: Cmdline{{Key: "a", Value: "1", HasValue: true}}},
		{in: "a=b=c", want: Cmdline{{Key: "a", Value: "b=c", HasValue: true}}},
		{in: "\ta=1\t\tb=2", want: Cmdline{{Key: "a", Value: "1", HasValue: true}, {Key: "b", Value: "2", HasValue: true}}},
		{in: `a="unterminated`, wantErr: true},
		{in: "a=\x00", wantErr: true},
		{in: strings.Repeat("x", maxCmdline+1), wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseCmdline(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseCmdline(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseCmdline(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestCmdlineGetLastWins(t *testing.T) {
	cl, err := ParseCmdline("root=/dev/sda1 root=/dev/sda2 flag")
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := cl.Get("root"); !ok || got != "/dev/sda2" {
		t.Errorf("Get(root) = %q, %v, want /dev/sda2, true", got, ok)
	}
	if _, ok := cl.Get("flag"); !ok {
		t.Errorf("Get(flag) not found")
	}
	if _, ok := cl.Get("nope"); ok {
		t.Errorf("Get(nope) found")
	}
}

func TestParseRoot(t *testing.T) {
	tests := []struct {
		in      string
		want    RootSpec
		wantErr bool
	}{
		{in: "/dev/sda2", want: RootSpec{"path", "/dev/sda2"}},
		{in: "PARTUUID=ABCD-01", want: RootSpec{"partuuid", "abcd-01"}},
		{in: "PARTLABEL=rootfs_a", want: RootSpec{"partlabel", "rootfs_a"}},
		{in: "UUID=x", want: RootSpec{"uuid", "x"}},
		{in: "PARTUUID=abcd/PARTNROFF=1", wantErr: true},
		{in: "", wantErr: true},
		{in: "sda2", wantErr: true},
		{in: "PARTUUID=", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseRoot(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseRoot(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseRoot(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{"", "root=/dev/sda2 ro", `a="x y" -- b`, `"`, "a=b=c\n", "switchback.slot=a switchback.canary=0123"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cl, err := ParseCmdline(s)
		if err != nil {
			return
		}
		for _, p := range cl {
			if p.Key == "" && !p.HasValue {
				t.Errorf("empty parameter from %q", s)
			}
			if strings.ContainsAny(p.Key, "\"") || strings.ContainsAny(p.Value, "\"") {
				t.Errorf("quote left in %+v from %q", p, s)
			}
			if v, ok := cl.Get("root"); ok {
				_, _ = ParseRoot(v)
			}
		}
	})
}
