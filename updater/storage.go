package updater

import (
	"errors"
	"fmt"
	"os"
	"syscall"
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
// whose boot runs fsck on the data partition; such errors also wrap
// ErrStateReadOnly. The updater never restarts the device for it: the
// application decides (the QEMU example's agent restarts when the
// partition turned read-only during the boot, and not when it was so from
// the boot on, which a restart would not repair). Mounting the data partition with errors=continue is not the
// answer: a journal abort makes it read-only anyway, and writing on after
// a metadata error risks losing what the partition holds.
var ErrStateStorage = errors.New("updater: state storage failed")

// ErrStateReadOnly is wrapped, with ErrStateStorage, when the StateDir's
// file system is read-only: the fault that lasts until the file system is
// checked, where a restart helps. A write that failed with an I/O error or
// a full file system on a read-write one wraps ErrStateStorage alone: it
// may pass, and restarting would not make room.
var ErrStateReadOnly = errors.New("updater: state directory is read-only")

// storageError marks err, from writing or reading the StateDir, as a
// storage fault.
func storageError(err error) error {
	switch {
	case err == nil || errors.Is(err, ErrStateStorage):
		return err
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w: %w: %w", ErrStateStorage, ErrStateReadOnly, err)
	}
	return fmt.Errorf("%w: %w", ErrStateStorage, err)
}

// storageFault says whether err, the failure of a step that writes the
// StateDir (the metadata refresh), is the StateDir's storage failing: a
// read-only mount, an error that is EROFS, or a probe file the StateDir
// refuses. It returns that storage error, or nil when the storage is fine
// and the failure lies elsewhere (the network). The probe matters: ext4 on
// recent kernels (6.1 in the QEMU example) answers EROFS to every write
// after its journal aborts without flagging the mount read-only, and the
// refresh's errors do not always carry the errno.
func (u *Updater) storageFault(err error) error {
	if serr := u.checkStorage(); serr != nil {
		return fmt.Errorf("%w (%v)", serr, err)
	}
	if errors.Is(err, syscall.EROFS) {
		return storageError(err)
	}
	f, perr := os.CreateTemp(u.cfg.StateDir, ".probe-*")
	if perr != nil {
		return storageError(fmt.Errorf("state directory %s: %w (%v)", u.cfg.StateDir, perr, err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// checkStorage fails fast, before any download, when the StateDir's file
// system is mounted read-only: nothing can be recorded there, so nothing
// can be installed. (An ext4 that shut itself down after an I/O error may
// not show as read-only here: its first refused write, the pending
// record, still comes before any download.)
func (u *Updater) checkStorage() error {
	ro, err := u.readOnly(u.cfg.StateDir)
	switch {
	case err != nil:
		return storageError(fmt.Errorf("state directory %s: %w", u.cfg.StateDir, err))
	case ro:
		return fmt.Errorf("%w: %w: %s is on a read-only file system (ext4 turns read-only after an I/O error; a restart with fsck repairs it)", ErrStateStorage, ErrStateReadOnly, u.cfg.StateDir)
	}
	return nil
}
