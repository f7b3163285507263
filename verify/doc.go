// Package verify decides what a device may install and proves that what it
// wrote is exactly that.
//
// It has three parts:
//
//   - [Client] is a TUF client for metadata only, built on go-tuf v2.
//     [Client.Update] runs the TUF client workflow (specification 5.3 to
//     5.5) with a fresh go-tuf updater whose reference time is fixed at the
//     start of the call: it looks for a new root (N+1.root.json) first,
//     then loads timestamp, snapshot and top-level targets, fsyncs what
//     go-tuf stored, and returns the [Trusted] metadata. [Trusted.Target]
//     looks up one path through the delegations (5.6.7) and returns a
//     [TargetInfo] for any target, switchback's or not; [Trusted.Targets]
//     lists the switchback targets under path prefixes; [Client.Refresh]
//     is Update and a listing of everything.
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
//
// # Refresh and idle checks
//
// The default configuration is the TUF workflow to the letter, and passes
// the official client conformance suite (theupdateframework/tuf-conformance,
// 113 of 113; see cmd/tuf-conformance-client). Every refresh asks for the
// next root version first, then for timestamp.json. With a
// [ConditionalFetcher] (the default fetcher is one) the timestamp is asked
// for with If-None-Match when the server gave an ETag, so a check that
// finds nothing changed costs two requests and no body read: the root
// probe answered 404 and the timestamp answered 304. A positive
// [Config].FullRefreshInterval opts into a cheaper mode that is not the
// TUF workflow (one request; a root published without a new timestamp is
// seen only after the interval).
//
// # Staged rollouts, channels and pins
//
// A release's custom metadata may carry a [Rollout] (start, salt, ramp,
// halt) and a list of channels; [Policy] carries the device's id, trusted
// time, channel and pin, and [Select] applies them. The policy is signed
// with the targets role, so a mirror can neither speed a rollout up nor
// aim it at a device (an older ramp is an older targets version, which TUF
// refuses), and the device id never leaves the device.
//
// # Delegations
//
// Delegated roles are fetched lazily: only those a lookup visits. A target
// path is looked up by the pre-order depth-first search of TUF 5.6.7.2:
// the top-level targets role answers first; then, in the order they are
// listed, the roles it delegates that path to (glob patterns matched
// segment by segment, see [MatchPath]; path_hash_prefixes against the hex
// SHA-256 of the path; the one bin of a succinct hash-bin delegation),
// depth first, each role visited once (cycles end there), a terminating
// delegation ending the backtracking, and at most [Config].MaxDelegations
// roles visited. Every delegated role is verified against the delegator
// that led to it, each time it is reached through another one.
//
// Selecting "the newest compatible release for this device" needs every
// release of a component the device could install, which a per-path lookup
// cannot give: [Trusted.Targets] lists the paths under some prefixes,
// visiting only the delegated roles whose patterns may match a path under
// them, and keeps for each path the answer the search gives. So that a
// device's check stays cheap, lay the repository out by path:
//
//   - name targets <component>/<hardware>/<file> (or <vendor>/<hardware>/…),
//     and have each device list its own prefixes ("app/board-a/", with
//     [Config].Prefixes or [Trusted.Targets]);
//   - delegate from the top-level targets role one role per hardware
//     family or vendor with patterns of that prefix ("app/board-a/*"),
//     terminating when that role alone may publish there, each with its own
//     keys and threshold (switchback-repo delegate);
//   - avoid catch-all patterns ("*", "app/*/*") high in the tree: every
//     device would then fetch the roles behind them; and avoid
//     path_hash_prefixes and succinct hash bins for releases, which spread
//     one hardware's releases over every bin.
//
// A device then fetches, at a check that finds a new snapshot, the one or
// two roles of its hardware, and nothing more when they did not change
// (stored roles are reused while the snapshot lists the same version).
package verify
