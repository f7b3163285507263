package partition

import (
	"reflect"
	"testing"
)

const sampleMountInfo = `22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
23 22 0:21 / /proc rw,nosuid shared:12 - proc proc rw
24 22 0:22 / /mnt/my\040disk rw - vfat /dev/sdb1 rw
`

func TestParseMountInfo(t *testing.T) {
	got, err := ParseMountInfo(sampleMountInfo)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mount{
		{Major: 259, Minor: 2, Root: "/", MountPoint: "/", FSType: "ext4", Source: "/dev/nvme0n1p2"},
		{Major: 0, Minor: 21, Root: "/", MountPoint: "/proc", FSType: "proc", Source: "proc"},
		{Major: 0, Minor: 22, Root: "/", MountPoint: "/mnt/my disk", FSType: "vfat", Source: "/dev/sdb1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseMountInfo = %+v, want %+v", got, want)
	}
	root, ok := RootMount(got)
	if !ok || root.Source != "/dev/nvme0n1p2" {
		t.Errorf("RootMount = %+v, %v, want /dev/nvme0n1p2", root, ok)
	}
	// An overlay mounted on / later hides the first.
	over, err := ParseMountInfo(sampleMountInfo + "30 22 0:40 / / rw - overlay overlay rw\n")
	if err != nil {
		t.Fatal(err)
	}
	if root, _ := RootMount(over); root.Source != "overlay" {
		t.Errorf("RootMount with overlay = %q, want overlay", root.Source)
	}
	if _, ok := RootMount(nil); ok {
		t.Errorf("RootMount(nil) found a root")
	}
}

func TestParseMountInfoErrors(t *testing.T) {
	for _, in := range []string{
		"22 1 259:2 / / rw - ext4",           // no source
		"22 1 259:2 / / rw ext4 /dev/sda rw", // no separator
		"22 1 2592 / / rw - ext4 /dev/sda rw",
		"22 1 a:b / / rw - ext4 /dev/sda rw",
		"short",
	} {
		if _, err := ParseMountInfo(in); err == nil {
			t.Errorf("ParseMountInfo(%q) succeeded, want an error", in)
		}
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add(sampleMountInfo)
	f.Add("1 2 3:4 / / - - x y z\n")
	f.Add(`1 2 3:4 / /a\134b rw - t s o`)
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMountInfo(s)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.Major < 0 || m.Minor < 0 {
				t.Errorf("negative device number in %+v", m)
			}
		}
		RootMount(ms)
	})
}
