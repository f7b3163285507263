// Package relay is a gateway's verified TUF mirror for the Linux edge
// devices behind it.
//
// A [Relay] refreshes the repository's metadata from upstream with the
// same verify client and download client as the updater, caches the
// targets its edge devices need, and serves both over HTTP (HTTPS by
// default: see [CA]) on the local network:
//
//	/metadata/<N>.root.json, /metadata/timestamp.json,
//	/metadata/<V>.snapshot.json, /metadata/<V>.targets.json, ...
//	/targets/<dir>/<sha256>.<name>   (consistent snapshots)
//	/targets/<path>                  (without)
//
// with the names the upstream repository uses. Edge devices run an
// ordinary switchback updater with MetadataURL and TargetsURL pointing at
// the relay and the cloud repository as MetadataMirrors and
// TargetsMirrors, and CAFile set to the gateway CA's certificate.
//
// # What is served
//
// Only metadata the relay verified and targets whose bytes match signed
// metadata, never an unverified byte:
//
//   - Metadata: after each refresh, the files verify stored in Dir/tuf are
//     read back and verified again, offline, as one set (root chain from
//     the embedded root, timestamp, snapshot, targets, delegated roles one
//     level deep) with go-tuf's TrustedMetadata. The set is published
//     whole; a file that does not verify is not served.
//   - Targets: every path the published targets (and delegated roles)
//     sign. A target is downloaded into Dir/cache/<sha256>.part, hashed
//     as it streams (exact length, every listed hash), and renamed to
//     Dir/cache/<sha256> only when it verified; only renamed files are
//     served, with http.ServeContent (Range, If-Range, If-None-Match,
//     If-Modified-Since; the ETag is the sha256). A download cut off is
//     resumed with Range, within the download client's retries and, after
//     that, from the .part file at the next attempt.
//   - Not served: chunk stores and chunk packs (/targets/chunks/...),
//     which are not TUF targets (each pack entry is checked by the device
//     against the signed chunk index, the image against its target). The
//     relay answers 404 for them. Packs exist to save uplink bytes; behind
//     a relay the uplink carries one copy of the full image whatever the
//     number of devices, and the local network carries the rest: an edge
//     device installing an adaptive delta finds no pack, takes the chunks
//     it lacks as byte ranges of the (uncompressed) image the relay has
//     cached, and otherwise (a zstd image: no chunk store either) falls
//     back to the patch or the full image from the relay. Serving packs
//     would cost the uplink their bytes on top of the image's.
//
// The relay prefetches, for every hardware id in [Config].Hardware, the
// newest image of each component and the patches and chunk indexes that
// produce it; any other signed target is fetched when an edge device asks
// for it (the request waits up to [Config].MissWait, then gets 503 with
// Retry-After). Concurrent requests for one target share one upstream
// download, so one release costs the uplink one copy of each target
// whatever the number of edge devices.
//
// # Threat model
//
// The gateway is trusted with availability only. Edge devices verify
// everything end to end against the repository's keys, so a compromised
// relay can withhold updates but never forge one. Its freeze power is
// bounded by TUF expiry: with the uplink down the relay keeps serving the
// last timestamp, snapshot and targets it verified until the earliest of
// their expiries; after that it serves nothing newer (404), edge devices
// move on to their next mirror, and they refuse anything older than what
// they already trust. Root versions stay served, as they never expire in
// a chain.
//
// The cache is bounded ([Config].MaxCacheBytes): a target the published
// metadata no longer signs is evicted after each refresh, and beyond the
// bound the least recently used files go first; a file being served or
// downloaded is never evicted. A file is trusted once renamed into place
// (the directory is the relay's, mode 0700), and checked again whenever it
// is served whole: a file changed behind the relay's back (disk rot,
// tampering) is refused by the edge device's own verification, and the
// relay, finding the mismatch at the end of the response, withholds the
// last bytes (the transfer fails, no complete wrong file is delivered) and
// evicts the file, so the next attempt gets verified bytes from upstream.
// Range requests are not checked.
package relay
