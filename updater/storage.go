package updater

import (
	"errors"
	"fmt"
)

// ErrStateStorage is wrapped by the error of a method that could not use
// the StateDir: a write failed (an I/O error, a full file system), or the
// file system under it is read-only. The running version is untouched,
// but no update can make progress until the storage is repaired.
//
// The read-only case is the one that lasts: ext4 remounts itself
// read-only after a metadata I/O error (errors=remount-ro) and always
// after its journal aborts, and it cannot be remounted read-write until
// it has been unmounted and checked. On a device that means a restart
// whose boot runs fsck on the data partition. The updater never restarts
// the device for it: the application decides (see the QEMU example's
// agent, which restarts once per boot when the storage failed after it
// started). Mounting the data partition with errors=continue is not the
// answer: a journal abort makes it read-only anyway, and writing on after
// a metadata error risks losing what the partition holds.
var ErrStateStorage = errors.New("updater: state storage failed")

// storageError marks err, from writing or reading the StateDir, as a
// storage fault.
func storageError(err error) error {
	if err == nil || errors.Is(err, ErrStateStorage) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrStateStorage, err)
}

// checkStorage fails fast, before any download, when the StateDir's file
// system is mounted read-only: nothing can be recorded there, so nothing
// can be installed.
func (u *Updater) checkStorage() error {
	ro, err := u.readOnly(u.cfg.StateDir)
	switch {
	case err != nil:
		return storageError(fmt.Errorf("state directory %s: %w", u.cfg.StateDir, err))
	case ro:
		return fmt.Errorf("%w: state directory %s is on a read-only file system (ext4 turns read-only after an I/O error; a restart with fsck repairs it)", ErrStateStorage, u.cfg.StateDir)
	}
	return nil
}
