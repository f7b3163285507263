// Package sdboot is an A/B [slots.BootControl] over systemd-boot's
// automatic boot assessment: boot counting by Boot Loader Specification
// entry names on the ESP, with the semantics of systemd-bless-boot.
//
// # Entries
//
// Each slot s has one type #1 entry, loader/entries/switchback-s.conf
// (the prefix is [Config.EntryPrefix]), which the integrator installs: its
// kernel, initrd and options (root= of the slot; switchback.slot=s is a
// useful fallback for the booted-slot detection). The name carries the
// boot counter, "switchback-b+LEFT-DONE.conf" ([ParseEntryName]):
// systemd-boot renames the entry it boots to LEFT-1, DONE+1 before
// starting it, and sorts entries with LEFT=0 ("bad") last.
// systemd-bless-boot's good drops the counter, its bad sets LEFT to 0.
//
// The order decides which entry boots, so switchback also keeps a
// sort-key line in its entries: [SortKeyTrial] for the armed slot,
// [SortKeyPrimary] for the committed one, [SortKeyOther] for the rest.
// systemd-boot orders entries with a sort key ascending by it (before
// entries without one), bad entries last; loader.conf must say
//
//	default switchback-*
//
// so that the first switchback entry in that order boots: the trial while
// it has tries, then the primary (the tests check this in systemd-boot
// 252 under OVMF: an entry armed for two tries boots twice, renamed to
// "+0-2", then the primary boots). A fixed default (or a
// LoaderEntryDefault EFI variable from "bootctl set-default") would boot
// an exhausted trial again: [Control.CheckCanary] reports such setups.
//
// # Steps
//
//   - Arm(slot, n): the slot's entry becomes "+n-0" with the trial sort
//     key, in one rename of a new file (written under a dot-name, fsynced).
//   - Commit(slot): the old primary takes the "other" sort key, then the
//     slot's entry loses its counter (good) and takes the primary sort
//     key. A cut in between leaves the trial running on its tries with
//     the old primary as fallback; the updater commits again.
//   - MarkBad(slot): LEFT set to 0 (bad) and the "other" sort key; if it
//     was the primary, the first other good slot becomes primary.
//
// Every file operation is a rename (or unlink) followed by an fsync of the
// directory. A cut between creating an entry's new file and removing the
// old leaves both: the new one sorts first, and the next step removes
// the old. FAT does not journal: a rename on the ESP is as atomic as the
// vfat driver makes it, which is also what systemd-boot itself relies on.
//
// # Booted slot
//
// The booted entry is the LoaderEntrySelected EFI variable that
// systemd-boot sets ([Config.EFIVarsDir]); without it (another loader, or
// no efivarfs), switchback.slot= on the kernel command line.
package sdboot
