// Package download is switchback's HTTP transfer layer: streaming,
// resumable, bounded-memory GETs of TUF targets and metadata.
//
// # Protocol
//
// [Client.Fetch] streams one target of a known length (from TUF) into a
// [Sink]. It starts with a plain GET, or, when an earlier attempt already
// delivered Offset bytes, with
//
//	Range: bytes=<Offset>-
//	If-Range: <ETag or Last-Modified of the earlier response>
//
// and accepts:
//
//   - 206 whose Content-Range starts exactly at the offset asked and whose
//     total is exactly the expected length: the bytes are appended;
//   - 200: the server ignores Range (logged once per host) or the file
//     changed (If-Range did not match): [Sink.Restart] is called and the
//     body is streamed from byte 0 (over a link that keeps breaking, a
//     server that ignores Range is given up on after RetryMax restarts);
//   - 416 when the offset already equals the length: nothing is missing.
//
// A 206 whose validator differs from the one asked for, a Content-Range or
// Content-Length that disagrees with the expected length, or a body longer
// than the expected length is refused: more bytes than expected are never
// read, let alone buffered. A body that ends early, a connection cut
// mid-body, a stall (no byte for [Config].StallTimeout) or a link too slow
// (fewer than [Config].LowSpeedLimit bytes per second over
// [Config].LowSpeedTime, measured across the attempts of one transfer) is
// resumed from the last byte delivered, with exponential backoff and
// jitter, within the retry budget; 429 and 5xx answers are retried
// (honouring Retry-After), other 4xx are not. Mirrors are tried in order.
//
// # One client for every byte
//
// Every byte a device fetches goes through a [Client], under the same
// rules (TLS, stall and low-speed limits, Pause, rate limit, retries,
// mirrors): whole targets with [Client.Fetch]; byte ranges of a file, such
// as the chunks of a delta, with [Client.Range] (each request asks for
// exactly the bytes still missing; a server that ignores Range fails with
// [ErrNoRange]); small files fetched whole, such as the files of a chunk
// store, with [Client.Get]; TUF metadata with [Client.Fetcher] and
// [Client.GetConditional]. Small files also have an overall deadline per
// mirror, [Config].MetadataTimeout ([ErrDeadline]), so that a server
// dripping bytes of timestamp.json cannot hold a check for long. A layer
// between the Client and the network that makes requests of its own (a
// registry's auth transport: its ping and token exchanges) sends them
// through [Client.RoundTripper], which applies the rules of small files
// to them and lets the Client's own requests pass.
//
// # Servers and Range
//
// Resuming needs a server that honours Range and If-Range. nginx, Apache
// httpd, Caddy and Go's [http.FileServer] do for static files; so do object
// stores (Amazon S3, Google Cloud Storage, Azure Blob Storage, S3-compatible
// stores) and CDNs (CloudFront, Fastly, Cloudflare, Akamai). Python's
// http.server does not: it answers 200 with the whole file (measured with
// Python 3.11). Against such a server nothing fails: every resume becomes
// a restart from byte 0 ([Sink.Restart], then the whole body), the bytes
// are verified by the caller as always, and only the bytes already fetched
// are paid for again. cmd/switchback's TestInstallServerIgnoresRange
// installs through a cut connection from such a server.
//
// The durable checkpoint (offset, validator, hash state) is the caller's:
// [Client.Fetch] reports the validator of the bytes that follow through the
// optional [ValidatorSink] ability, and progress after every write, so the
// caller can sync its slot and record how far it got.
//
// # Threat model
//
// Nothing here decides whether bytes are good: a mirror, a proxy or a
// man-in-the-middle may serve anything. What this package guarantees is
// bounded resource use against a hostile server — at most the expected
// length is read from any target response and at most maxLength from a
// metadata response, memory is a fixed copy buffer — and that the bytes
// delivered to the sink are, in order, what the servers sent. The caller
// verifies them against TUF (length and every hash) before anything is
// activated. TLS uses a private transport (custom CA bundle, optional
// client certificate reloaded when its files change, TLS 1.2 at least) and
// never touches [http.DefaultClient] or [http.DefaultTransport].
//
// A [Client] is safe for concurrent use by multiple goroutines; the rate
// limit is shared by all transfers of one Client.
package download
