// Package grub is an A/B [slots.BootControl] over GRUB's environment
// block (grubenv), with the grub.cfg fragment that counts boot tries.
//
// # The environment block
//
// grubenv is a 1024-byte file: the line "# GRUB Environment Block", then
// name=value lines (a backslash or newline in a value is escaped with a
// backslash), then '#' up to 1024 bytes. [Env] reads and edits it exactly
// as GRUB's envblk.c does: a changed variable keeps its place, a new one
// is appended, a removed one closes up. Our edits are byte for byte those
// of grub-editenv (the tests compare both, and keep fixtures written by
// it in testdata/). The block is rewritten in place, same size, then
// fsynced: never replaced by a rename, because GRUB's save_env writes the
// file's existing sectors. It must therefore live on a filesystem GRUB can
// write (plain ext2/3/4 or FAT; not LVM, RAID, btrfs or an encrypted
// volume). Concurrent writers are serialized with flock(2).
//
// # Variables
//
// Every step writes all five variables, in this order, in one write:
//
//	sb_primary  the committed slot ("a"); empty or unknown: the first slot
//	sb_bad      space-separated slots marked bad
//	sb_canary   random hex, renewed by Arm and Commit; passed to the kernel
//	sb_tries    tries left for the trial, "0".."9" (empty: no trial)
//	sb_trial    the slot armed for trial, or empty
//
// sb_tries comes before sb_trial so that a write torn by a power cut arms
// nothing until it is complete (the tests cut every write at every byte
// and check that GRUB then boots the old or the new choice).
//
// [Control.Arm] writes sb_trial=slot, sb_tries=N, removes the slot from
// sb_bad and renews sb_canary. [Control.Commit] writes sb_primary=slot,
// empties sb_trial and sb_tries, removes the slot from sb_bad and renews
// sb_canary. [Control.MarkBad] adds the slot to sb_bad, ends its trial,
// and if it was the primary makes the first other good slot primary.
//
// # The boot script
//
// switchback.cfg, in this directory, implements the choice. Copy it next
// to grub.cfg and source it after setting the slot names and each slot's
// root= (a device path, PARTUUID= or PARTLABEL=):
//
//	set sb_slots="a b"
//	set sb_root_a="PARTLABEL=rootfs_a"
//	set sb_root_b="PARTLABEL=rootfs_b"
//	set sb_env="(hd0,gpt1)/grub/grubenv"   # optional, default $prefix/grubenv
//	source "${prefix}/switchback.cfg"
//	menuentry "switchback ${sb_boot}" {
//		search --no-floppy --set=root --part-label "rootfs_${sb_boot}"
//		linux /boot/vmlinuz ${sb_args} ro quiet
//		initrd /boot/initrd.img
//	}
//
// The script loads the five variables; if sb_trial names a slot that is
// not in sb_bad and sb_tries is 1..9, it decrements sb_tries, saves it
// with save_env (before the kernel runs, so a trial that hangs uses up its
// tries) and boots the trial; otherwise it boots sb_primary (or the first
// slot). An exhausted trial stays recorded with sb_tries=0, so userspace
// sees that the bootloader fell back. It sets sb_boot (the slot),
// sb_root (the value of sb_root_<slot>) and sb_args, which the linux line
// must carry:
//
//	root=$sb_root switchback.slot=$sb_boot switchback.canary=$sb_canary
//
// It needs the GRUB modules loadenv, test and eval (GRUB 2.02 or later);
// they load on demand from $prefix, or build them into a core image. The
// tests run it in real GRUB (grub-emu 2.06, the env on a FAT disk): the
// BootControl conformance suite with GRUB doing the boots, and GRUB's
// choice and saved count compared with the Go model on 80 blocks,
// including blocks torn by a power cut.
//
// # Booted slot and canary
//
// The booted slot is switchback.slot= on the kernel command line
// (/proc/cmdline, see [WithCmdline]). [Control.CheckCanary] compares
// switchback.canary= with sb_canary: equal, GRUB and userspace read the
// same file. A new canary written by Arm or Commit is only passed by the
// next boot; within the boot the control remembers, in a runtime
// directory emptied at boot ([WithRuntimeDir], /run/switchback), the
// canary it saw match, so later checks in the same boot still pass.
package grub
