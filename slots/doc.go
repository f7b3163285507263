// Package slots defines where images are written and how the running one
// is chosen, and provides the built-in implementations.
//
// A [Slot] is one place an image can be written and read back. A
// [BootControl] decides which slot runs: a bootloader environment for A/B
// partitions, a symlink swap for file and directory slots. The updater
// composes the two: it writes the slot that is not running, verifies every
// byte, arms a trial of it, and commits it or marks it bad once the new
// version has started.
//
// The core interfaces are small. Optional abilities are extra interfaces
// discovered by type assertion, as io/fs does: [StartCounter] for boot
// controls whose tries are counted in userspace, [BlockSizer] for slots that
// prefer aligned writes, [KernelBuffered] for writers whose bytes outlive
// the writing process (cheap resume points after a killed process).
//
// Package slotstest holds a conformance suite for Slot implementations and
// in-memory fakes for tests.
package slots
