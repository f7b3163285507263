package slots

import (
	"archive/tar"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// syncTree makes an unpacked tree durable with one syncfs(2) of the file
// system holding it: all its files' data and metadata and its directories'
// entries are written and flushed, at the cost of one flush instead of one
// per file. If syncfs fails, every file and directory is fsynced instead.
// Caveat: syncfs reports write-back errors only since Linux 5.8; on older
// kernels an I/O error while flushing goes unnoticed here (the updater's
// health checks still gate the commit).
func syncTree(root *os.Root, dirs, files map[string]bool) error {
	d, err := root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err == nil {
		return nil
	} else if err2 := syncEach(root, dirs, files); err2 != nil {
		return fmt.Errorf("syncfs: %v; fsync: %w", err, err2)
	}
	return nil
}

// mknod creates the device node of hdr at name, relative to its parent
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
		return fmt.Errorf("device node: %w", err)
	}
	return nil
}
