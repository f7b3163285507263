package updater

import "syscall"

// stRDOnly is ST_RDONLY, statfs(2)'s flag of a read-only mount.
const stRDOnly = 0x1

// readOnlyFS reports whether dir is on a file system mounted read-only
// (mount -o remount,ro, or a kernel that flags the mount after an error;
// see storageFault for one that does not).
func readOnlyFS(dir string) (bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return false, err
	}
	return st.Flags&stRDOnly != 0, nil
}
