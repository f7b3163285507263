// Package switchback keeps Linux devices up to date over the air without
// ever bricking them. It is a library: applications embed it, implement a
// [slots.Slot] or a [health.HealthCheck] where they need to, and the
// [updater] package does the rest.
//
// # The path of one update
//
//	Check   TUF refresh (timestamp → snapshot → targets), then the newest
//	        compatible release per component (hardware, version,
//	        minimum installed version, not blocklisted)
//	Fetch   streamed over HTTP with Range resume; memory bounded
//	Verify  length and every hash of the TUF target over what was written
//	Arm     the new slot is tried N times by the bootloader or start counter
//	Switch  reboot (A/B partitions) or atomic swap and restart (files, dirs)
//	Confirm on the next start: health checks within a deadline; pass
//	        commits, fail marks the slot bad, rolls back and blocklists
//
// # Invariants
//
//  1. Nothing unverified is activated.
//  2. Every step is atomic or resumable: a power cut at any instant leaves a
//     version that starts, a state file that loads and intact TUF metadata.
//  3. A failed update never strands the device: boot counting, start
//     counting and health checks roll back by themselves.
//  4. No update loops: a release that failed is never retried.
//  5. Memory is bounded by constants, not by image size.
//  6. The server is a static TUF repository: any HTTP server, object store
//     or CDN serves a fleet.
//
// # Threat model, in short
//
// Release metadata is The Update Framework (TUF) through go-tuf/v2: signed
// roles with thresholds, key rotation and expiry. A device installs only
// bytes whose length and hashes a valid targets role signed, for its
// hardware and never older than what it runs (unless the application
// allows downgrades). This defeats arbitrary-software, rollback, freeze,
// mix-and-match, endless-data and malicious-mirror attacks, as long as the
// root keys stay offline and the device clock is sane (the updater refuses
// to judge expiry with a clock before a configured minimum time). TUF does
// not protect against a compromised device, nor against a release that was
// signed but is bad: health-gated commit and rollback are for that.
//
// The packages: [updater] composes everything; [verify] is the TUF client
// and the streaming verifier; [slots] defines Slot and BootControl with the
// built-in file and directory slots (and, in subpackages, partitions and
// the GRUB, U-Boot and systemd-boot backends); [health] holds health checks
// and systemd integration; [delta] holds delta updates.
package switchback
