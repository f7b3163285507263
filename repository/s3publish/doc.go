// Package s3publish uploads a switchback repository (package repository)
// to an S3-compatible object store, so that devices update straight from
// the bucket (or a CDN in front of it) with no server of our own.
//
// # Order
//
// A device reads timestamp.json first and everything else through it
// (timestamp → N.snapshot.json → N.targets.json and delegated roles →
// hash-prefixed target files), and walks N.root.json before that. So a
// publish uploads in phases, each complete before the next starts:
//
//  1. PhaseContent: everything under targets/ (target files, patches,
//     chunk indexes, the chunk store): named by content hash, invisible
//     until metadata names them.
//  2. PhaseTargetsMetadata: N.targets.json and N.<delegated role>.json.
//  3. PhaseSnapshotMetadata: N.snapshot.json.
//  4. PhaseRootMetadata: N.root.json, as late as possible, so that a key
//     rotation shows a device a new root and an old timestamp for the
//     shortest time (the device's check then fails and is retried; it
//     never installs anything unverified).
//  5. PhaseSnapshot: an unversioned snapshot.json, if the repository has
//     one (switchback's never does: consistent snapshots are always on).
//  6. PhaseTimestamp: timestamp.json, the one upload that publishes the
//     release.
//  7. PhaseRoot: root.json, the unversioned copy of the newest root.
//
// Until phase 6 a device sees the previous release, whole; after it, the
// new one, whole. The bytes of the files that change in place
// (timestamp.json, root.json, snapshot.json) are read once, before the
// repository is listed, so a local publish running at the same time can
// only add files the upload does not need. Before anything is uploaded,
// the release is checked complete: the snapshot the timestamp names, the
// metadata that snapshot lists and every file targets metadata names
// (repository.Repo.Referenced) must be in the repository. A bucket whose
// timestamp.json is newer than the local one (another publisher) is
// refused with ErrRemoteNewer: uploading would roll devices back, and
// they would refuse it.
//
// Each object gets the Cache-Control the README prescribes
// (repository.CacheControl): immutable for versioned and content-addressed
// files, no-cache for the three that change in place.
//
// # Resuming
//
// An interrupted publish is resumed by running it again: an object
// already in the bucket with the same size and the same ETag (the MD5 of a
// single-part upload, or the MD5 of the part MD5s for a multipart one,
// computed locally with the same part size) is skipped. When the ETag
// does not tell (a store that encrypts, or another part size), the
// object's x-amz-meta-switchback-sha256, which every upload sets, is
// compared instead. Each upload sends Content-MD5 for every part, so the
// store refuses bytes damaged on the way.
//
// # Pruning
//
// With Options.Prune, after timestamp.json and root.json are up, objects
// under the prefix's metadata/ and targets/ that the local repository no
// longer holds are deleted (run repository.Repo.Prune and PruneChunks
// locally first: they decide what devices may still ask for). Never
// deleted: any root metadata, the files that change in place, and objects
// outside metadata/ and targets/. Since a publish refuses a repository
// whose metadata names a file it lacks (ErrIncomplete), what the bucket
// keeps names only what it keeps. Snapshot or targets metadata found only in the bucket
// is deleted only if it has expired and is older than the repository's
// current version of its role; otherwise the prune stops before deleting
// anything (ErrPruneRefused).
//
// # Endpoints
//
// Config.Endpoint is a URL: https:// for any store, http:// only to a
// loopback address (a store on the same machine, tests). Credentials are
// static keys (the command line tool reads AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN); none means anonymous
// requests.
//
// A Publisher is safe for concurrent use, but two publishes to the same
// prefix at once are not: serialise them (the repository's own lock only
// covers local publishes).
package s3publish
