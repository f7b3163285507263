// Package updater keeps a device's components up to date: it composes the
// TUF client and verifier (package verify), the slots and boot controls
// (package slots), the health checks (package health) and the transfer.
//
// The path of one update, per component:
//
//	Check    refresh the trusted TUF metadata; pick the newest release
//	         this device may install (hardware, version, minimum
//	         installed version, blocklist). When nothing changed the
//	         check is two requests and no body: the next root version
//	         (404) and the timestamp (If-None-Match answered 304)
//	Install  stream it into a slot that is not running, verifying every
//	         byte (length and every listed hash; for zstd targets also
//	         the signed uncompressed digest), checkpointing the transfer
//	         durably every few MiB; then arm a trial of the slot
//	Restart  Config.Restart reboots or restarts into the new version;
//	         without one, Install and Run return an error wrapping
//	         ErrRestartRequired and the caller restarts: syscall.Exec of
//	         the application's path for a file slot (the symlink now
//	         names the new version), a reboot for A/B partitions
//	Confirm  at the next start: on the trial slot, run the health checks
//	         within ConfirmTimeout (a check still running at the deadline
//	         fails); pass commits, fail marks the slot bad, blocklists the
//	         release and restarts into the previous one; back on the
//	         previous slot while a trial was armed, the bootloader (or
//	         start counter) fell back: record and blocklist
//
// No update loops, no false bans. Only a release that failed on the device
// (trial boot, health checks, crash loop), or whose verified image its
// slot refused for its own content (an error wrapping slots.ErrBadImage:
// an archive breaking the unpacking rules, a container manifest with no
// platform for this hardware), is blocklisted, by target hash, until a
// newer one is published. Bytes that fail verification in transit
// (a proxy answering 200 with an HTML page, a wrong length, a hash
// mismatch) are the network's fault: the same Install fetches the target
// again, in full, from the next of TargetsMirrors; when every server
// failed, the target backs off — 1 minute after the first failure,
// doubling up to 24 hours — recorded in the state file. Check skips a
// target in backoff with an error wrapping ErrBackoff (not ErrNoUpdate:
// an update exists); new signed targets metadata (a new targets version,
// or new hashes for the target) ends the backoff. Install called directly
// does not wait for it.
//
// One writer per StateDir. New takes an exclusive lock (flock) on
// StateDir/lock and holds it until Close; another process or Updater on
// the same StateDir gets ErrStateDirLocked naming the holder's PID.
// LockStateDir gives the same lock to tools that change the device without
// an Updater (switchback guard, mark-good, rollback).
//
// The state of that path lives in one versioned JSON file in
// Config.StateDir, replaced atomically and durably (temp file, fsync,
// rename, fsync of the directory) before every step that depends on it, so
// a process that dies anywhere resumes from it.
//
// A StateDir that cannot be written fails every method that needs it with
// an error wrapping ErrStateStorage, before any download when its file
// system is read-only (statfs, on Linux): ext4 turns itself read-only after
// an I/O error and stays so until a restart runs fsck. The running version
// is untouched; restarting the device is the application's call (errors
// of a read-only StateDir also wrap ErrStateReadOnly).
//
// The slot is written from a goroutine of its own (at most four 256 KiB
// buffers in flight), so that its fsyncs and the durable checkpoints
// overlap the download rather than stop it. Between durable checkpoints,
// for slots whose writes reach the kernel at once (slots.KernelBuffered:
// the file, directory and partition slots), a light checkpoint (one pwrite,
// no fsync) follows every buffer; it is trusted only by a process of the
// same boot, so a killed and restarted process fetches less than 1 MiB
// again while a power cut resumes from the last durable checkpoint.
//
// A resumed transfer (from a durable or a light checkpoint, full image or
// delta) trusts bytes an earlier run wrote into the slot, which the disk
// may have lost or changed since: before arming, Install reads the whole
// image back from the slot and checks it against the image digest (as
// Config.ReadBack does after every install). A mismatch fails with
// ErrSlotChanged, blames the device's storage rather than the release (no
// blocklist), and the next Install transfers again from byte zero. No
// slot can prove its content unchanged across a restart (a file's mtime
// can be set, a partition has none), so the read-back is not skipped; it
// costs one sequential read and hash of the image, after a resume only.
//
// A state file that cannot be read is moved aside and the device starts
// from a safe state: the boot control's view is authoritative, and only
// resume progress is lost. A loaded state is checked against the
// configuration (records of slots that do not exist are dropped; an
// install marked verified or armed short of its length is transferred
// again). When the state file was missing or unusable, each slot is
// identified by hashing its content and matching it with the image
// digests of the trusted targets, at the first Check (and at Confirm for
// a trial running with no record of it): the primary slot's release is
// the installed version, and a failed trial's release is blocklisted.
// New stays cheap: it reads no slot, and a device with a valid state file
// never hashes one.
//
// # Heterogeneous devices
//
// A gateway updates devices that are not itself: each Component may carry
// its own Hardware id, and several components — sensor-01 … sensor-50 —
// may follow one release line (Component.Release, the targets' custom
// "component") while their Names stay unique. Each keeps its own installed
// version, trial and blocklist: a release that failed on sensor-07 is
// still offered to sensor-08. A target that several components install is
// fetched once into <StateDir>/staging/<sha256>, verified, and every
// component's transfer reads that copy (checked again before each use);
// staged files no trusted target names are removed at the next Check.
//
// Every method of Updater is safe for concurrent use; they run one at a
// time, except Status, which reads the state as last saved and never waits
// for a running download. Events are delivered outside the updater's lock,
// in order (see Config.Events).
package updater
