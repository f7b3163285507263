//go:build !linux

package slots

import (
	"archive/tar"
	"os"
)

// syncTree fsyncs every file and directory of an unpacked tree.
func syncTree(root *os.Root, dirs, files map[string]bool) error {
	return syncEach(root, dirs, files)
}

// mknod refuses: device nodes are created on Linux only.
func mknod(_ *os.Root, name string, hdr *tar.Header) error {
	return unsafeErr(name, "device node (type %q) outside Linux", hdr.Typeflag)
}
