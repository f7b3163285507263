//go:build !linux

package updater

// readOnlyFS is not known on this system: a read-only StateDir shows as
// the error of the first write (wrapping ErrStateStorage) instead.
func readOnlyFS(string) (bool, error) { return false, nil }
