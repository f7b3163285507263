// Package repository builds, signs and maintains a static TUF repository
// of switchback releases: the publisher's side of the update protocol.
//
// A repository is a directory:
//
//	<dir>/metadata/        served: N.root.json, root.json, N.targets.json,
//	                       N.snapshot.json, timestamp.json
//	<dir>/targets/         served: <dir>/<sha256>.<name> target files
//	<dir>/staged/          private: role metadata waiting for signatures
//	<dir>/repository.json  private settings: expiry period per role
//
// Serve metadata/ and targets/ with any static HTTP server, object store or
// CDN; nothing else is needed on the server. Consistent snapshots are always
// on, so a client never mixes files of two releases, and every target is
// published with exactly one hash (sha256), so its hash-prefixed URL is
// deterministic.
//
// Private keys live outside the repository directory, one PEM (PKCS#8) file
// per key, written with 0600 permissions ([Key.WriteFile], [LoadKeys]). A
// [Repo] signs each role with every available key authorised for it; keys
// that are absent (a root key kept offline, a second targets key held by
// another person) make [Repo.Publish] stage the role in staged/ and return
// an error wrapping [ErrThreshold]. The staged metadata is then exported
// ([Repo.Export]), signed on another machine ([SignExported]) and merged
// back ([Repo.MergeSignatures]) until the threshold is met.
//
// Every change goes through one cycle: change the working metadata (add or
// remove targets, rotate keys, bump a role), then [Repo.Publish], which
// writes root and targets (all or nothing), then a new snapshot and
// timestamp. A role that changes gets a new version and a fresh expiry
// ([Repo.SetExpiry] sets the period). Files are written durably (temp file,
// fsync, rename, fsync of the directory) and metadata last, so a
// crash never publishes a reference to a file that is missing.
//
// Threat model: the repository directory and the online keys (timestamp,
// snapshot, usually targets) live on the release machine; root keys should
// live offline and are only needed to change keys, thresholds and the root
// expiry.
//
// A Repo is not safe for concurrent use. Across processes, Publish holds an
// flock(2) on <dir>/.lock and refuses with ErrConflict when another
// process published since the Repo was opened, so a cron "refresh" and a
// release engineer's "add" never publish the same version twice; a change
// staged against an older repository is refused at Open rather than lost.
package repository
