//go:build !linux

package slots

import "os"

// syncTree fsyncs every file and directory of an unpacked tree.
func syncTree(root *os.Root, dirs, files map[string]bool) error {
	return syncEach(root, dirs, files)
}
