package updater

import (
	"time"
)

// State is where a component stands in the path of one update. Events
// report transitions between states.
type State string

// The states of a component.
const (
	StateIdle        State = "idle"        // nothing in progress
	StateDownloading State = "downloading" // bytes flowing into the inactive slot
	StateVerified    State = "verified"    // every byte matched the signed target
	StateArmed       State = "armed"       // the new slot is tried at the next start
	StateConfirming  State = "confirming"  // running the new version's health checks
	StateCommitted   State = "committed"   // the new version is the primary one
	StateRolledBack  State = "rolled-back" // the new version failed; the previous one runs
	StateFailed      State = "failed"      // the install failed before anything was activated
)

// Event is one of the typed events the updater reports through
// Config.Events: [StateChanged], [Progress], [HealthResult], [ErrorEvent].
type Event interface {
	isEvent()
}

// StateChanged reports that a component moved to a new state.
type StateChanged struct {
	Component  string
	From, To   State
	Version    string // the release concerned
	TargetPath string // its TUF target path
	Reason     string // why, for failures and rollbacks
}

// Progress reports bytes written to a slot.
type Progress struct {
	Component string
	Done      int64
	Total     int64
}

// HealthResult reports one health check run during confirmation.
type HealthResult struct {
	Component string
	Check     string
	Err       error
	Duration  time.Duration
}

// ErrorEvent reports an error the updater handled (and will retry, or has
// recovered from).
type ErrorEvent struct {
	Component string
	Op        string
	Err       error
}

func (StateChanged) isEvent() {}
func (Progress) isEvent()     {}
func (HealthResult) isEvent() {}
func (ErrorEvent) isEvent()   {}
