//go:build !unix

package repository

// lockDir is a no-op where flock(2) does not exist; the version check in
// Publish still catches most concurrent changes.
func lockDir(string) (func(), error) { return func() {}, nil }
