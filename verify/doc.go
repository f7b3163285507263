// Package verify decides what a device may install and proves that what it
// wrote is exactly that.
//
// It has three parts:
//
//   - [Client] is a TUF client for metadata only, built on go-tuf v2. Each
//     [Client.Refresh] makes a fresh go-tuf updater with the reference time
//     fixed at the start of the call, walks the root chain from the newest
//     root it trusts, loads timestamp, snapshot and targets (and simple
//     delegations), fsyncs the metadata go-tuf stored, and returns every
//     signed target whose switchback custom metadata is valid ([Targets]).
//   - [Select] applies the device's [Policy] (component, hardware,
//     min_version, no downgrade, blocklist) and picks the newest release.
//   - [Verifier] checks a stream against the target's trusted length and
//     hashes while it is written, with go-tuf's semantics, in constant
//     memory, and can be checkpointed so a resumed download does not re-read
//     what it wrote.
//
// # Threat model
//
// The repository is a set of static files served by anyone; only the keys
// are trusted. TUF defends the metadata: signatures with thresholds, root
// key rotation, freshness (expiry), and rollback, freeze, mix-and-match and
// endless-data attacks (every file is fetched with a length bound, and the
// default fetcher stops reading past it). Target bytes are never trusted
// until a Verifier has seen all of them.
//
// Expiry is judged with the device clock. A device without a real-time
// clock boots in 1970, where expired metadata looks fresh: set
// [Config].MinTime (for example to the build time) and Refresh returns
// [ErrClockUnset] until the clock has been set.
//
// Local metadata in [Config].Dir is protected by file permissions, and a
// stored root is not taken on its own word: every root version walked is
// kept in Dir/roots, and a stored root is used only if it chains, version by
// version, from a root the process already trusts (the embedded one at
// first), each step checked as go-tuf checks a root update. A root that
// does not chain (history lost, tampering, a root of another repository
// left on a re-provisioned device) is ignored, a root older than one already
// trusted is never used, and a stored file that does not parse is moved
// aside. Losing or corrupting Dir therefore falls back to the embedded root
// and walks the root chain again from the repository, but never trusts
// less.
//
// go-tuf's DownloadTarget holds a whole target in memory and is not used:
// the caller streams the bytes (see [Target].URL) through a Verifier.
package verify
