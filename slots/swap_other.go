//go:build !linux && !darwin && !windows

package slots

import "os"

// lockFile does nothing where flock is missing: changes are serialised
// within the process only.
func lockFile(*os.File) error { return nil }

// freeSpace is unknown here: writes fail when the disk fills instead.
func freeSpace(string) (int64, bool) { return 0, false }
