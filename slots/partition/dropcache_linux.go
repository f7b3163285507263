package partition

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCache asks the kernel to forget the file's cached pages so that a
// read-back comes from the device. Dirty pages are not dropped: callers
// Sync first. Errors are ignored: this only makes the check stronger.
func dropCache(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
