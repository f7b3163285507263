// Package smptest simulates a microcontroller that runs MCUboot and an
// MCUmgr SMP server, for tests and examples of package smp and of code
// that updates MCUs through it.
//
// An [MCU] keeps its flash in files (primary slot, secondary slot,
// scratch sector) and follows MCUboot's docs/design.md: image trailers
// with their magic, image-ok and copy-done flags; the swap-type tables
// (test, permanent, revert); a swap using the scratch sector, one sector
// at a time with three status records each, so that a reset in the
// middle of a swap resumes it; a test that runs once and is reverted
// unless confirmed; images checked against their SHA-256 TLV and, when
// the MCU has a key, their ED25519 signature before they are swapped in
// or booted.
//
// Its SMP server answers the OS group (echo, reset, MCUmgr parameters)
// and the image group (state, test, confirm, upload, erase, slot info) as
// Zephyr's img_mgmt reports them, over plain UDP ([MCU.ServeUDP]), DTLS
// ([MCU.ServeDTLS], whose sessions a reset drops), and SMP console
// framing on a serial line or pty ([MCU.ServeSerial]).
//
// Faults: [MCU.CutAfter] cuts the power at any flash operation (upload
// chunk, erase, swap step, trailer write), [MCU.PowerOff] at once;
// [MCU.PowerOn] starts again from the files, as does [New] on the same
// directory. [Behavior] makes an application crash at start (the watchdog
// resets, MCUboot reverts), hang, or report a wrong hash.
//
// [BuildImage] makes MCUboot images (header, protected TLVs, SHA-256,
// optionally an ED25519 signature), as imgtool sign does.
package smptest
