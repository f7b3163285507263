// Package partition is a [slots.Slot] over a raw partition (or an image
// file standing in for one, in tests and on development machines).
//
// A slot is named by a device path, "PARTUUID=<uuid>" or
// "PARTLABEL=<label>"; the name is resolved through /dev/disk/by-partuuid
// and /dev/disk/by-partlabel every time the slot is opened, so that device
// renumbering across boots does not matter.
//
// The running slot is never written: [Slot.Writer] fails with an error
// wrapping [slots.ErrSlotActive] when the kernel command line names the
// slot (switchback.slot=<name>, as the shipped GRUB and U-Boot scripts
// pass, or root= with a path, PARTUUID= or PARTLABEL=) or when / is
// mounted from it (/proc/self/mountinfo). A slot mounted anywhere else is
// refused too, as writing under a mounted filesystem corrupts it. With
// [Config.Boot] set, the
// primary slot of the boot control is refused too, so that a trial never
// overwrites its fallback. When none of the evidence can be read, writes
// are refused.
//
// Writes go straight to the device with pwrite (no O_DIRECT: page cache
// write-back gives large requests anyway); [slots.Writer.Sync] is fsync.
// The slot reports [DefaultBlockSize] through [slots.BlockSizer] so that
// the updater writes in large aligned chunks. [Slot.Verify] reads an image
// back after dropping the cached pages.
//
// A partition does not record the length of the image it holds: a
// Reader's Size is the size of the last Writer opened through the same
// Slot value, or else the whole device. The updater knows the image length
// from the TUF target and reads no further.
//
// [ParseCmdline], [ParseRoot] and [ParseMountInfo] are the pure parsers
// behind the booted-slot detection; the boot backends (slots/grub,
// slots/uboot, slots/sdboot) use ParseCmdline for switchback.slot= and
// switchback.canary=.
package partition
