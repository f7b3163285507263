package report

import (
	"time"

	"github.com/switchback-ota/switchback/updater"
)

// Record is one reported event. Fields that do not apply to its Type are
// omitted.
type Record struct {
	// Seq numbers the device's records from 0, across restarts.
	Seq uint64 `json:"seq"`
	// Time is when the event was recorded, by the device clock.
	Time time.Time `json:"time"`
	// Type is "state", "health" or "error".
	Type      string `json:"type"`
	Component string `json:"component,omitempty"`
	// From and To are the states of a "state" record.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Version and Target name the release of a "state" record.
	Version string `json:"version,omitempty"`
	Target  string `json:"target,omitempty"`
	// Reason says why, for failures and rollbacks.
	Reason string `json:"reason,omitempty"`
	// Check and DurationMS describe a "health" record; Error is set
	// when the check (or, for an "error" record, Op) failed.
	Check      string `json:"check,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	Op         string `json:"op,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Batch is the body of one POST to the report endpoint.
type Batch struct {
	// Source is Config.Source, the name the operator gave the device.
	Source string `json:"source,omitempty"`
	// Dropped counts records dropped since the last acknowledged batch
	// because the outbox was full.
	Dropped uint64 `json:"dropped"`
	// Records are sent oldest first.
	Records []Record `json:"records"`
}

// recordOf converts an updater event; ok is false for events not
// reported (Progress).
func recordOf(e updater.Event, now time.Time) (r Record, ok bool) {
	r.Time = now.UTC()
	switch e := e.(type) {
	case updater.StateChanged:
		r.Type, r.Component, r.From, r.To = "state", e.Component, string(e.From), string(e.To)
		r.Version, r.Target, r.Reason = e.Version, e.TargetPath, e.Reason
	case updater.HealthResult:
		r.Type, r.Component, r.Check, r.DurationMS = "health", e.Component, e.Check, e.Duration.Milliseconds()
		if e.Err != nil {
			r.Error = e.Err.Error()
		}
	case updater.ErrorEvent:
		r.Type, r.Component, r.Op = "error", e.Component, e.Op
		if e.Err != nil {
			r.Error = e.Err.Error()
		}
	default:
		return r, false
	}
	return r, true
}
