package oci

import (
	"archive/tar"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// mknod creates the device node of hdr at name, relative to the parent
// directory opened through root, so that nothing outside the root is
// reached.
func mknod(root *os.Root, name string, hdr *tar.Header) error {
	dir, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	mode := uint32(hdr.Mode & 0o777)
	if hdr.Typeflag == tar.TypeChar {
		mode |= unix.S_IFCHR
	} else {
		mode |= unix.S_IFBLK
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(int(dir.Fd()), path.Base(name), mode, int(dev)); err != nil {
		return fmt.Errorf("oci: device node %s: %w", name, err)
	}
	return nil
}
