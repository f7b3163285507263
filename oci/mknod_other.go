//go:build !linux

package oci

import (
	"archive/tar"
	"os"
)

// mknod refuses: device nodes are created on Linux only.
func mknod(_ *os.Root, name string, hdr *tar.Header) error {
	return unsafef(name, "device node (type %q) outside Linux", hdr.Typeflag)
}
