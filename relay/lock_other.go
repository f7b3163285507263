//go:build !unix

package relay

// lockDir is a no-op where flock(2) does not exist: run one relay per
// directory.
func lockDir(string) (func(), error) { return func() {}, nil }
