// Package uboot is an A/B [slots.BootControl] over a U-Boot environment,
// with the boot script (boot.cmd) that counts boot tries.
//
// # The environment
//
// A copy of the environment is a CRC32 (IEEE, little-endian) of the data
// area, then, in a redundant environment, a flags byte, then
// "name=value\0" strings ended by an empty string, padded to the
// environment size. [ParseImage] and [EncodeImage] are the pure
// transforms; [ParseFwEnvConfig] reads the classic fw_env.config that
// names the copies (device or file, offset, size, sector size).
//
// With one copy, a write replaces it. With two (redundant), the current
// copy is the one with a valid CRC, or of two valid ones the one with
// the larger flags (0 follows 255); a write goes to the other copy with
// flags+1, so a write torn by a power cut leaves a bad CRC there and the
// older copy is still the current one, for U-Boot and for us. This is the
// "incremental" flags scheme libubootenv and U-Boot use for files, block
// devices and SPI/MMC; the boolean scheme of NOR/NAND MTD devices is not
// supported (MTD and UBI are refused: they need erase handling). A single
// copy torn by a power cut has a bad CRC: U-Boot then uses its built-in
// default environment and boot.cmd boots the first slot; [Control.Status]
// fails with [ErrNoValidEnv] until a write (after [Control.Init])
// repairs it. Use a redundant environment (with boot.cmd's file mode,
// sb_envfile2).
//
// Variables are kept in the order libubootenv keeps them (a new one goes
// before the first that sorts after it), and the pad bytes are 0x00, as
// U-Boot's env export and fw_setenv leave them; mkenvimage pads with
// 0xff, and [EncodeImage] takes the pad byte, giving mkenvimage's exact
// bytes. The tests check all of this against fw_printenv, fw_setenv and
// mkenvimage. Writes are pwrite at the copy's offset, then fsync; they
// take flock(2) on libubootenv's lock file (/var/lock/fw_printenv.lock)
// and on the first device.
//
// # Variables
//
// The same as the GRUB backend's (slots/grub), with the same semantics:
//
//	sb_primary  the committed slot; absent or unknown: the first slot
//	sb_trial    the slot armed for trial (absent: none)
//	sb_tries    tries left for the trial, "0".."9"
//	sb_bad      space-separated slots marked bad
//	sb_canary   random hex, renewed by Arm and Commit; passed to the kernel
//
// U-Boot has no empty variables: a variable set to "" is removed.
// [Control.Arm] sets sb_trial and sb_tries, removes the slot from sb_bad
// and renews sb_canary; [Control.Commit] sets sb_primary, removes sb_trial
// and sb_tries and the slot from sb_bad, renews sb_canary;
// [Control.MarkBad] adds the slot to sb_bad, ends its trial and, if it was
// the primary, makes the first other good slot primary. Each is one write.
//
// # The boot script
//
// boot.cmd, in this directory, makes the choice; compile it with
//
//	mkimage -A arm64 -T script -C none -n switchback -d boot.cmd boot.scr
//
// and source it from bootcmd before loading the kernel, after setting
// sb_slots ("a b") and sb_root_<slot> for each slot (the kernel's root=,
// e.g. PARTLABEL=rootfs_a). The variables live either in U-Boot's own
// environment (fw_env.config names U-Boot's environment storage; the
// script saves with saveenv), or, as Debian's U-Boot builds have no
// writable environment on many boards, in a file of their own: set
// sb_envdev ("virtio 0:1"), sb_envfile ("switchback.env"), sb_envaddr (a
// free RAM address; on qemu_arm64 not loadaddr, which equals scriptaddr)
// and sb_envsize (hex); the script reads it with "env import -c" and
// writes it back with "env export -c" and fatwrite. Give userspace the
// same file as a single copy: a fw_env.config line
// "/boot/switchback.env 0x0 0x4000", or Device{Path, 0, 0x4000}.
// Better, as a torn write of a single copy loses the committed slot, set
// sb_envfile2 too ("switchback-redund.env"): the script then keeps a
// redundant pair, reading the current copy by CRC and flags and writing
// the count-down into the other copy with the next flags, as this
// package does; give userspace both files, one fw_env.config line each.
// The pair needs 2*sb_envsize+8 bytes of RAM from sb_envaddr.
//
// The tests run boot.cmd in Debian's U-Boot 2023.01 for qemu_arm64
// under QEMU: the count-down saved with env export -c and fatwrite and
// read back by us, a trial listed bad never tried, a torn blob booting
// the first slot; with a redundant pair, each count-down in the other
// copy with the next flags, a torn newer copy leaving the older one
// current, and flags wrapping from 255 to 0.
//
// The script imports the variables; if sb_trial names a slot not in sb_bad
// and sb_tries is 1..9, it decrements sb_tries with setexpr, saves it
// before the kernel runs (so a trial that hangs uses up its tries) and
// boots the trial; otherwise sb_primary, or the first slot. An exhausted
// trial stays recorded with sb_tries=0. It sets sb_boot and sb_root and
// appends to bootargs:
//
//	root=${sb_root} switchback.slot=${sb_boot} switchback.canary=${sb_canary}
//
// # Booted slot and canary
//
// The booted slot is switchback.slot= on the kernel command line
// ([WithCmdline]). [Control.CheckCanary] compares switchback.canary= with
// sb_canary, as the GRUB backend does, remembering within one boot
// ([WithRuntimeDir]) the canary it saw match.
package uboot
