//go:build !linux

package durable

// syncFiles fsyncs every file.
func syncFiles(files []string) error { return fsyncEach(files) }
