package updater

import (
	"sync"
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

// eventQueue delivers events to Config.Events in the order they were
// emitted, from one goroutine at a time and never under the updater's lock,
// so that the callback may call any method of the Updater. Emitting never
// blocks: a run of Progress events of one component not yet delivered
// collapses into the latest, which bounds the queue.
type eventQueue struct {
	deliver func(Event) // Config.Events; nil discards events

	mu         sync.Mutex
	cond       sync.Cond // signalled when an event was delivered
	q          []Event
	pushed     uint64 // events queued so far
	delivered  uint64 // events delivered so far
	running    bool   // a goroutine is draining q
	inCallback bool   // that goroutine is inside deliver
}

func newEventQueue(deliver func(Event)) *eventQueue {
	q := &eventQueue{deliver: deliver}
	q.cond.L = &q.mu
	return q
}

// push queues e and makes sure a goroutine delivers it.
func (q *eventQueue) push(e Event) {
	if q.deliver == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if p, ok := e.(Progress); ok && len(q.q) > 0 {
		if last, ok := q.q[len(q.q)-1].(Progress); ok && last.Component == p.Component {
			q.q[len(q.q)-1] = p
			return
		}
	}
	q.q = append(q.q, e)
	q.pushed++
	if !q.running {
		q.running = true
		go q.drain()
	}
}

// drain delivers queued events until none is left.
func (q *eventQueue) drain() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.q) > 0 {
		e := q.q[0]
		q.q[0] = nil
		q.q = q.q[1:]
		q.inCallback = true
		q.mu.Unlock()
		q.deliver(e)
		q.mu.Lock()
		q.inCallback = false
		q.delivered++
		q.cond.Broadcast()
	}
	q.running = false
}

// mark returns a mark for wait: the events queued so far.
func (q *eventQueue) mark() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pushed
}

// delivering reports whether the callback is running now.
func (q *eventQueue) delivering() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inCallback
}

// wait returns once the events queued before mark n are delivered.
func (q *eventQueue) wait(n uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.delivered < n {
		q.cond.Wait()
	}
}
