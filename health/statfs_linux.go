package health

import "syscall"

// availableBytes returns the bytes available to unprivileged users on the
// file system holding path.
func availableBytes(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	// Bsize is int64 or int32 depending on the architecture.
	return st.Bavail * uint64(st.Bsize), nil
}
