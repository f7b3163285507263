package slots

import (
	"context"
	"errors"
	"io"
)

// Slot is one place an image can be written and read back: a partition, a
// staged file, a staged release archive, the flash of a device behind the
// gateway.
//
// A Slot never decides what runs: that is the job of a [BootControl]. The
// updater writes an image into the slot that is not running, verifies every
// byte, and only then asks the BootControl to try it.
//
// Implementations must be safe for use by one goroutine at a time; the
// updater never uses a Slot concurrently (with one exception, which a
// writer opts into: see [KernelBuffered]). [slotstest.TestSlot] checks an
// implementation against this contract.
type Slot interface {
	// Name identifies the slot ("a", "b"). It is stable across restarts
	// and is what a BootControl and the updater's state file refer to.
	Name() string

	// Writer opens the slot to receive an image of exactly size bytes.
	// Bytes already staged in the slot are not discarded, so that an
	// interrupted write can be resumed at an offset; the caller decides
	// where to write. A slot that cannot hold size bytes returns an error
	// wrapping [ErrTooLarge]. Opening the running slot is refused with
	// [ErrSlotActive].
	Writer(ctx context.Context, size int64) (Writer, error)

	// Reader opens the image the slot holds, for read-back verification
	// and as a base for deltas. A slot that has never held an image
	// returns an error wrapping [ErrEmpty].
	Reader(ctx context.Context) (Reader, error)
}

// Writer receives one image. Writes may come at any offset below the size
// given to [Slot.Writer], in any order, and may be repeated.
type Writer interface {
	io.WriterAt

	// Sync makes everything written so far durable: after a power cut,
	// every byte written before a successful Sync reads back as written.
	Sync() error

	// Close releases the writer. It does not activate anything. Close
	// after a failed write leaves the slot holding an incomplete image,
	// which is never activated.
	Close() error
}

// Reader reads back the image a slot holds.
type Reader interface {
	io.ReaderAt
	io.Closer

	// Size is the length of the image in bytes (for a partition: the
	// length of the last image written, when known, else the device size).
	Size() int64
}

// BootControl decides which slot runs: a bootloader environment (GRUB,
// U-Boot, systemd-boot) for A/B partitions, or a symlink swap for file and
// directory slots. Slots are named by [Slot.Name].
//
// Every method that changes state does so in one atomic write, so that a
// power cut at any instant leaves either the old or the new state, both of
// which boot.
type BootControl interface {
	// Status reports which slot runs, which is committed, and any trial.
	Status(ctx context.Context) (BootStatus, error)

	// Arm makes slot the one tried at the next boot (or start), at most
	// tries times; if it is never committed, the primary slot runs again.
	// The slot must not be the running one.
	Arm(ctx context.Context, slot string, tries int) error

	// Commit makes slot, which must be running, the primary slot and ends
	// its trial.
	Commit(ctx context.Context, slot string) error

	// MarkBad records that slot failed: it is no longer tried, and the
	// primary slot runs at the next boot (or start). Marking the running
	// slot bad is allowed: that is how a failed trial rolls back.
	MarkBad(ctx context.Context, slot string) error
}

// BootStatus is what a [BootControl] knows of its slots.
type BootStatus struct {
	// Booted is the slot running now (for swap controls: the slot that
	// starts when the application starts).
	Booted string
	// Primary is the committed slot: the one run when no trial is armed,
	// and the one fallen back to when a trial fails.
	Primary string
	// Trial is the slot armed for trial, or "" when none is.
	Trial string
	// TriesLeft is how many more starts the trial slot gets before the
	// primary runs again. It is meaningful only when Trial is set.
	TriesLeft int
	// Bad lists slots marked bad and not rewritten since.
	Bad []string
}

// StartCounter is implemented by boot controls whose tries are counted in
// userspace rather than by a bootloader (file and directory slots). The
// updater, or the guard run before the application, calls CountStart once
// per start of the application, before anything risky runs: it consumes
// one try of an armed trial, and when none is left it puts the primary
// slot back in place and marks the trial bad.
type StartCounter interface {
	CountStart(ctx context.Context) (BootStatus, error)
}

// CanaryChecker is implemented by boot controls that can prove that
// userspace and the bootloader read and write the same environment. The
// boot script passes a canary value it read from its environment to the
// kernel (switchback.canary= on the command line); CheckCanary compares it
// with what userspace reads, and returns an error wrapping [ErrMismatch]
// that tells the integrator what is misconfigured when they differ.
type CanaryChecker interface {
	CheckCanary(ctx context.Context) error
}

// BlockSizer is implemented by slots that prefer writes of a given size
// and alignment (raw partitions, flash). The updater then writes in
// multiples of BlockSize.
type BlockSizer interface {
	BlockSize() int
}

// KernelBuffered is implemented by writers whose WriteAt has handed the
// bytes to the operating system (the page cache of a file or a block device
// opened without O_DIRECT) by the time it returns: written bytes then
// survive the writing process being killed, though not a power cut before
// [Writer.Sync]. Such a writer must also allow Sync to run concurrently
// with WriteAt (as fsync and pwrite on one file do): the updater then
// writes as bytes arrive and syncs for its durable checkpoints from another
// goroutine, so the download never waits for the disk, and keeps cheap
// checkpoints, trusted only within the same boot of the kernel, between
// durable ones, so that a killed and restarted process fetches almost
// nothing again. A writer that buffers in its own memory, or whose device
// forgets unsynced writes when the writer goes away, must not implement it
// (or must return false).
type KernelBuffered interface {
	Writer
	// KernelBuffered reports whether the property holds for this writer.
	KernelBuffered() bool
}

// Errors callers branch on. Implementations wrap them with context.
var (
	// ErrSlotActive is returned when a write or a trial would touch the
	// slot that is running.
	ErrSlotActive = errors.New("slots: slot is the running slot")
	// ErrTooLarge is returned when an image does not fit a slot.
	ErrTooLarge = errors.New("slots: image larger than slot")
	// ErrEmpty is returned when a slot holds no image.
	ErrEmpty = errors.New("slots: slot holds no image")
	// ErrUnknownSlot is returned when a BootControl is given a slot name it
	// does not know.
	ErrUnknownSlot = errors.New("slots: unknown slot")
	// ErrNotRunning is returned by Commit for a slot that is not the one
	// running.
	ErrNotRunning = errors.New("slots: slot is not running")
	// ErrMismatch is returned when the bootloader and userspace disagree
	// about the environment (the canary check failed).
	ErrMismatch = errors.New("slots: bootloader environment mismatch")
	// ErrBadImage is wrapped by the errors of a verified image that a
	// slot or boot control cannot use because of its own content (an
	// archive breaking the unpacking rules, a container manifest with no
	// platform for this hardware): the release, not the transfer, is at
	// fault, and the updater blocklists it rather than try it again. Make
	// such errors with [BadImageError].
	ErrBadImage = errors.New("slots: unusable image")
)

// BadImageError returns an error with text msg that wraps [ErrBadImage],
// for the sentinels of implementations ([ErrUnsafeArchive] is one). Two
// calls with the same msg return equal errors.
func BadImageError(msg string) error { return badImageError(msg) }

type badImageError string

func (e badImageError) Error() string        { return string(e) }
func (e badImageError) Is(target error) bool { return target == ErrBadImage }
