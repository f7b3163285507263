package updater

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/switchback-ota/switchback/slots"
)

// Status is a snapshot of what the updater knows, for display and support.
type Status struct {
	Components []ComponentStatus
	// Blocklist lists releases that failed, oldest first.
	Blocklist []BlockedRelease
}

// ComponentStatus is one component's part of a Status.
type ComponentStatus struct {
	Name string
	// Installed is the committed version.
	Installed string
	// Boot is what the boot control reports (BootErr when it failed).
	Boot    slots.BootStatus
	BootErr error
	// Pending describes an install in progress or a trial awaiting
	// confirmation; nil when there is none.
	Pending *PendingStatus
	// Slots maps slot names to the version each holds ("" when unknown,
	// with Complete false while an image is being written).
	Slots map[string]SlotStatus
	// LastResult summarises the last finished update.
	LastResult string
}

// PendingStatus describes an install that has not finished.
type PendingStatus struct {
	Phase      Phase
	Slot       string
	Version    string
	TargetPath string // the TUF target path of the release
	Done       int64
	Total      int64
}

// SlotStatus is what the updater knows a slot holds.
type SlotStatus struct {
	Version      string
	TargetSHA256 string // the sha256 of the TUF target written into the slot
	Complete     bool
}

// Status reports each component's installed version, boot state, pending
// install and slot contents, and the blocklist, as last saved: it does not
// wait for a running method (a download saves its progress every few MiB).
// It does no network I/O; it asks each BootControl for its status, which
// may run concurrently with the updater's own calls to it.
func (u *Updater) Status(ctx context.Context) (Status, error) {
	snap, err := u.st.snapshot()
	if err != nil {
		return Status{}, err
	}
	return statusOf(ctx, u.cfg.Components, snap), nil
}

// ReadStatus is Status for a process that is not the StateDir's writer:
// a command-line tool or a support script beside a running application.
// It reads the last saved state file without taking the StateDir's lock
// (the updater replaces that file atomically, so a reader sees one saved
// state or the next, never a mix) and changes nothing: a corrupt state file
// is an error here, not moved aside. Components that never committed a
// release report their FactoryVersion, as with New.
func ReadStatus(ctx context.Context, cfg Config) (Status, error) {
	if err := cfg.validate(); err != nil {
		return Status{}, err
	}
	snap := &store{p: newPersisted()}
	path := filepath.Join(cfg.StateDir, stateFile)
	b, found, err := readState(path)
	if err != nil {
		return Status{}, fmt.Errorf("updater: read state: %w", err)
	}
	if found {
		if snap.p, err = decodeState(b); err != nil {
			return Status{}, fmt.Errorf("updater: state file %s: %w", path, err)
		}
	}
	snap.setFactoryVersions(cfg.Components)
	return statusOf(ctx, cfg.Components, snap), nil
}

// statusOf builds a Status from a saved state and the components' boot
// controls.
func statusOf(ctx context.Context, comps []Component, snap *store) Status {
	var st Status
	for _, c := range comps {
		cs := snap.component(c.Name)
		s := ComponentStatus{Name: c.Name, Installed: cs.Installed, LastResult: cs.LastResult, Slots: map[string]SlotStatus{}}
		s.Boot, s.BootErr = c.Boot.Status(ctx)
		if pd := cs.Pending; pd != nil {
			s.Pending = &PendingStatus{Phase: pd.Phase, Slot: pd.Slot, Version: pd.Version, TargetPath: pd.TargetPath, Done: pd.Offset, Total: pd.Length}
		}
		for name, sc := range cs.Slots {
			s.Slots[name] = SlotStatus{Version: sc.Version, TargetSHA256: sc.TargetSHA256, Complete: sc.Complete}
		}
		st.Components = append(st.Components, s)
	}
	st.Blocklist = snap.blocklist()
	return st
}
