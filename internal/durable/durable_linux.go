package durable

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// syncFiles flushes files with one syncfs(2) per filesystem holding them:
// the cost of one flush rather than one per file. If syncfs fails, every
// file is fsynced instead. Caveat: syncfs reports write-back errors only
// since Linux 5.8.
func syncFiles(files []string) error {
	done := map[uint64]bool{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("sync %s: %w", name, err)
		}
		var st syscall.Stat_t
		err = syscall.Fstat(int(f.Fd()), &st)
		if err == nil && !done[uint64(st.Dev)] {
			err = unix.Syncfs(int(f.Fd()))
			done[uint64(st.Dev)] = err == nil
		}
		f.Close()
		if err != nil {
			return fsyncEach(files)
		}
	}
	return nil
}
