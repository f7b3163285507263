//go:build !unix

package updater

import "os"

// tryLock always succeeds where flock(2) does not exist: one writer per
// StateDir is then the application's duty.
func tryLock(*os.File) (bool, error) { return true, nil }
