// Package report sends an updater's events to an HTTP endpoint of the
// operator's choosing without losing any, and exports Prometheus metrics.
//
// A [Reporter] takes events (pass [Reporter.Observe] as, or from,
// updater.Config.Events), turns each into a [Record] and appends it to a
// durable [Outbox] on disk before returning: one file per record, written
// to a temporary name, synced and renamed. A sender goroutine posts the
// oldest records in batches and deletes them only after a 2xx answer, so
// every record is delivered at least once across crashes and power cuts
// (a record may be sent twice: the receiver deduplicates on Record.Seq and
// Batch.Source). Failures back off exponentially with jitter, up to
// Config.MaxBackoff. The outbox is bounded (Config.MaxRecords,
// Config.MaxBytes): when full, the oldest records are dropped first and
// counted; the count travels in the next batch.
//
// Progress events are not reported (they are many and the [Metrics] count
// the bytes); state changes, health results and errors are.
//
// # Wire format
//
// POST Config.URL, Content-Type application/json, body a [Batch]:
//
//	{"source": "gw-0042", "dropped": 0, "records": [
//	  {"seq": 17, "time": "2026-12-07T05:30:00.123Z", "type": "state",
//	   "component": "rootfs", "from": "downloading", "to": "verified",
//	   "version": "1.4.0", "target": "rootfs/1.4.0/rootfs.img"},
//	  {"seq": 18, "time": "...", "type": "health", "component": "rootfs",
//	   "check": "gateway", "duration_ms": 12},
//	  {"seq": 19, "time": "...", "type": "error", "component": "rootfs",
//	   "op": "download", "error": "connection reset"}]}
//
// Any 2xx status acknowledges the whole batch. Seq grows by one per record
// of a device, across restarts.
//
// The client uses the transfer configuration's TLS files (CAFile,
// CertFile, KeyFile of updater.Config), so the device presents the same
// mTLS identity to the report endpoint as to the update server.
package report
