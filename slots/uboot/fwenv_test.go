package uboot

import (
	"reflect"
	"testing"
)

func TestParseFwEnvConfig(t *testing.T) {
	tests := []struct {
		in      string
		want    []Device
		wantErr bool
	}{
		{in: "/dev/mmcblk0 0x400000 0x4000\n", want: []Device{{Path: "/dev/mmcblk0", Offset: 0x400000, EnvSize: 0x4000}}},
		{in: "# Device offset size sector\n/dev/mmcblk0\t0x400000\t0x4000\t0x200\n/dev/mmcblk0\t0x404000\t0x4000\t0x200\n",
			want: []Device{{"/dev/mmcblk0", 0x400000, 0x4000, 0x200, 0}, {"/dev/mmcblk0", 0x404000, 0x4000, 0x200, 0}}},
		{in: "/boot/uboot.env 0 4000 1000 2\n", want: []Device{{"/boot/uboot.env", 0, 0x4000, 0x1000, 2}}},
		{in: "/f 010 0x100\n", want: []Device{{Path: "/f", Offset: 8, EnvSize: 0x100}}}, // C octal offset
		{in: "/f 4096 0X100\n\n   \n/short 0\n", want: []Device{{Path: "/f", Offset: 4096, EnvSize: 0x100}}},
		{in: "", wantErr: true},
		{in: "# only a comment\n", wantErr: true},
		{in: "/f 0 0\n", wantErr: true},
		{in: "/f x 0x100\n", wantErr: true},
		{in: "/f 0 0xzz\n", wantErr: true},
		{in: "/f -1 0x100\n", wantErr: true},
		{in: "/f 0 0x100\n/g 0 0x200\n", wantErr: true},
		{in: "/f 0 0x100\n/g 0 0x100\n/h 0 0x100\n", wantErr: true},
		{in: "uboot:\n  size: 0x4000\n", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseFwEnvConfig(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseFwEnvConfig(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseFwEnvConfig(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if err == nil {
			again, err := ParseFwEnvConfig(FormatFwEnvConfig(got))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Format then Parse of %+v: %+v, %v", got, again, err)
			}
		}
	}
}

func FuzzParseFwEnvConfig(f *testing.F) {
	f.Add("/dev/mmcblk0 0x400000 0x4000\n")
	f.Add("# c\n/a 0 4000 1000 2\n/a 0x4000 4000 1000 2 1\n")
	f.Add("/f 010 0x100")
	f.Fuzz(func(t *testing.T, s string) {
		devs, err := ParseFwEnvConfig(s)
		if err != nil {
			return
		}
		if len(devs) == 0 || len(devs) > 2 {
			t.Fatalf("%d devices", len(devs))
		}
		for _, d := range devs {
			if d.EnvSize <= 0 || d.Offset < 0 {
				t.Fatalf("bad device %+v", d)
			}
		}
		again, err := ParseFwEnvConfig(FormatFwEnvConfig(devs))
		if err != nil || !reflect.DeepEqual(again, devs) {
			t.Fatalf("round trip of %+v: %+v, %v", devs, again, err)
		}
	})
}
