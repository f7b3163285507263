package updater

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/switchback-ota/switchback/internal/durable"
)

// stateVersion is the schema version of the state file. Loading a file of a
// newer schema is refused rather than guessed at.
const stateVersion = 1

// stateFile is the name of the state file inside Config.StateDir.
const stateFile = "state.json"

// Phase is where a pending install stands. Persisted as a string.
type Phase string

// The phases of a pending install, in order.
const (
	// PhaseDownloading: bytes are being written to the slot; Offset bytes
	// are durable and hashed (the hash state is checkpointed).
	PhaseDownloading Phase = "downloading"
	// PhaseVerified: every byte is in the slot and matched the target.
	PhaseVerified Phase = "verified"
	// PhaseArmed: the boot control tries the slot at the next start.
	PhaseArmed Phase = "armed"
)

// persisted is the whole state file. The JSON names are the on-disk
// schema: change them only with a new stateVersion and a migration (the
// Go names may differ: TargetSHA256 is "target", for the files devices
// already have). Across the updater, TargetSHA256 names a target's hash
// and TargetPath its path in the TUF repository.
type persisted struct {
	Version    int                        `json:"version"`
	Components map[string]*componentState `json:"components"`
	// Blocklist holds releases that failed, by "<component>/<target
	// sha256>" (by the sha256 alone in files of earlier builds, whose
	// entries name their component). They are never installed again on
	// that component; a newer release is.
	Blocklist map[string]BlockedRelease `json:"blocklist,omitempty"`
	// Failures counted verification failures per target sha256 in earlier
	// builds (three blocklisted the release); no longer written.
	Failures map[string]int `json:"failures,omitempty"`
	// Backoff holds the targets whose bytes failed verification in
	// transit, by sha256: they wait, and are never blocklisted for it.
	Backoff map[string]transitBackoff `json:"backoff,omitempty"`
}

type componentState struct {
	// Installed is the committed version, and InstalledTargetSHA256 its
	// target's sha256 ("" for the factory image).
	Installed             string `json:"installed"`
	InstalledTargetSHA256 string `json:"installed_target,omitempty"`
	// Slots records what each slot holds, by slot name.
	Slots   map[string]slotContent `json:"slots,omitempty"`
	Pending *pending               `json:"pending,omitempty"`
	// LastResult is a one-line summary of the last finished update.
	LastResult string `json:"last_result,omitempty"`
}

// slotContent is what the updater knows a slot holds. Complete is false
// while an image is being written: a partial image is never a delta base and
// never activated.
type slotContent struct {
	// TargetSHA256 is the sha256 of the TUF target written into the slot.
	TargetSHA256 string `json:"target"`
	Version      string `json:"version,omitempty"`
	Length       int64  `json:"length"`
	Complete     bool   `json:"complete"`
	// Image is the sha256 of the image the slot holds (uncompressed: the
	// base of patches), Was that of the image it held before the write in
	// progress began (a base for adaptive deltas, chunk by chunk).
	Image string `json:"image,omitempty"`
	Was   string `json:"was,omitempty"`
}

// pending is an install that has started and not finished.
type pending struct {
	Phase        Phase     `json:"phase"`
	Method       string    `json:"method,omitempty"` // patch, adaptive, full
	Slot         string    `json:"slot"`
	TargetPath   string    `json:"target_path"`
	TargetSHA256 string    `json:"target"` // the target's sha256, hex
	Version      string    `json:"version"`
	Length       int64     `json:"length"` // bytes the slot receives (uncompressed)
	Offset       int64     `json:"offset"` // durable bytes of the transfer (image bytes if compressed)
	HashState    []byte    `json:"hash_state,omitempty"`
	Validator    string    `json:"validator,omitempty"`
	Started      time.Time `json:"started"`
	ArmedAt      time.Time `json:"armed_at,omitzero"`

	// WireOffset and ImageHashState checkpoint a compressed transfer at a
	// frame boundary: WireOffset compressed bytes are durable (HashState is
	// their hash state), and they decode to the Offset image bytes whose
	// hash state is ImageHashState.
	WireOffset     int64  `json:"wire_offset,omitempty"`
	ImageHashState []byte `json:"image_hash_state,omitempty"`
	// PatchCheckpoint is the decoder's checkpoint (delta.PatchCheckpoint)
	// of a static patch at the frame boundary WireOffset, Offset.
	PatchCheckpoint []byte `json:"patch_checkpoint,omitempty"`

	// resumed is set by the transfer (not persisted) when it continued from
	// bytes an earlier run wrote into the slot: Install then reads the
	// whole image back before arming it.
	resumed bool
}

// resetTransfer forgets the progress of a transfer: the next one starts
// from byte zero.
func (pd *pending) resetTransfer() {
	pd.Offset, pd.HashState, pd.Validator = 0, nil, ""
	pd.WireOffset, pd.ImageHashState, pd.PatchCheckpoint = 0, nil, nil
}

// BlockedRelease is a release that failed and is never retried.
type BlockedRelease struct {
	Component string    `json:"component"`
	Version   string    `json:"version"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
}

func newPersisted() *persisted {
	return &persisted{
		Version:    stateVersion,
		Components: map[string]*componentState{},
		Blocklist:  map[string]BlockedRelease{},
		Failures:   map[string]int{},
	}
}

// errCorruptState marks a state file that exists but cannot be used.
var errCorruptState = errors.New("corrupt state file")

// decodeState parses a state file. It is a pure function, fuzzed.
func decodeState(b []byte) (*persisted, error) {
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorruptState, err)
	}
	if p.Version != stateVersion {
		return nil, fmt.Errorf("%w: schema version %d, this build reads %d", errCorruptState, p.Version, stateVersion)
	}
	if p.Components == nil {
		p.Components = map[string]*componentState{}
	}
	if p.Blocklist == nil {
		p.Blocklist = map[string]BlockedRelease{}
	}
	if p.Failures == nil {
		p.Failures = map[string]int{}
	}
	for name, c := range p.Components {
		if c == nil {
			return nil, fmt.Errorf("%w: component %q is null", errCorruptState, name)
		}
		if pd := c.Pending; pd != nil {
			switch pd.Phase {
			case PhaseDownloading, PhaseVerified, PhaseArmed:
			default:
				return nil, fmt.Errorf("%w: component %q: unknown phase %q", errCorruptState, name, pd.Phase)
			}
			if pd.Slot == "" || pd.TargetSHA256 == "" || pd.Length < 0 || pd.Offset < 0 || pd.Offset > pd.Length || pd.WireOffset < 0 {
				return nil, fmt.Errorf("%w: component %q: inconsistent pending install", errCorruptState, name)
			}
		}
	}
	return &p, nil
}

func encodeState(p *persisted) ([]byte, error) {
	return json.MarshalIndent(p, "", "  ")
}

// store keeps the state file. It is not safe for concurrent use; the
// Updater serialises access.
type store struct {
	path string
	p    *persisted
	// beforeSave, when set (by tests), runs before every save; its error
	// fails the save as a power cut would.
	beforeSave func() error
	// unknown is set when the state file was missing or unusable: what
	// the slots hold is then found by their content (see rebuild).
	unknown bool
	// saved is the encoded state as last saved or published: what
	// snapshot returns to readers that do not hold the updater's lock.
	saved atomic.Pointer[[]byte]
}

// loadStore reads the state file. A missing file is a fresh device. A
// corrupt or truncated one is moved aside (kept for inspection) and the
// device starts from a safe state: nothing pending, the boot control's view
// authoritative. That loses resume progress, never a working version.
func loadStore(dir string) (*store, []string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("updater: state directory: %w", storageError(err))
	}
	s := &store{path: filepath.Join(dir, stateFile)}
	var warnings []string
	b, found, err := readState(s.path)
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("updater: read state: %w", storageError(err))
	case !found:
		s.p = newPersisted()
		s.unknown = true
	default:
		p, derr := decodeState(b)
		if derr != nil {
			aside := fmt.Sprintf("%s.corrupt-%d", s.path, time.Now().UnixNano())
			if rerr := os.Rename(s.path, aside); rerr != nil {
				return nil, nil, fmt.Errorf("updater: state file %s is unusable (%v) and cannot be moved aside: %w", s.path, derr, rerr)
			}
			warnings = append(warnings, fmt.Sprintf("state file unusable (%v); moved to %s; starting from a safe state", derr, aside))
			p = newPersisted()
			s.unknown = true
		}
		s.p = p
	}
	return s, warnings, nil
}

// readState reads the state file at path; found is false (err nil) when
// there is none.
func readState(path string) (b []byte, found bool, err error) {
	b, err = os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	return b, err == nil, err
}

func (s *store) component(name string) *componentState {
	c := s.p.Components[name]
	if c == nil {
		c = &componentState{Slots: map[string]slotContent{}}
		s.p.Components[name] = c
	}
	if c.Slots == nil {
		c.Slots = map[string]slotContent{}
	}
	return c
}

// setFactoryVersions records each component's FactoryVersion as its
// installed version while it has never committed a release.
func (s *store) setFactoryVersions(comps []Component) {
	for _, c := range comps {
		if cs := s.component(c.Name); cs.Installed == "" {
			cs.Installed = c.FactoryVersion
		}
	}
}

// save writes the state durably. Every transition of an install is saved
// before the step that depends on it, so that a crash resumes correctly.
func (s *store) save() error {
	if s.beforeSave != nil {
		if err := s.beforeSave(); err != nil {
			return fmt.Errorf("updater: save state: %w", storageError(err))
		}
	}
	b, err := encodeState(s.p)
	if err != nil {
		return fmt.Errorf("updater: encode state: %w", err)
	}
	if err := durable.WriteFile(s.path, b, 0o600); err != nil {
		return fmt.Errorf("updater: save state: %w", storageError(err))
	}
	s.saved.Store(&b)
	return nil
}

// publish makes the state in memory what snapshot returns, without saving
// it (defaults filled in at load time).
func (s *store) publish() error {
	b, err := encodeState(s.p)
	if err != nil {
		return fmt.Errorf("updater: encode state: %w", err)
	}
	s.saved.Store(&b)
	return nil
}

// snapshot returns a private copy of the state as last saved or published.
// It is safe to call concurrently with the updater's use of the store.
func (s *store) snapshot() (*store, error) {
	b := s.saved.Load()
	if b == nil {
		return &store{p: newPersisted()}, nil
	}
	p := newPersisted()
	if err := json.Unmarshal(*b, p); err != nil {
		return nil, fmt.Errorf("updater: state snapshot: %w", err)
	}
	return &store{p: p}, nil
}

// blocked reports whether the release is blocklisted for any component.
func (s *store) blocked(sha string) bool {
	for k, b := range s.p.Blocklist {
		if k == sha || k == blockKey(b.Component, sha) {
			return true
		}
	}
	return false
}

// blockedFor returns the blocklist of one component, as verify.Policy
// takes it: a release that failed on sensor-07 is still tried on
// sensor-08. Entries of earlier builds are keyed by the sha256 alone and
// name their component.
func (s *store) blockedFor(comp string) func(sha string) bool {
	return func(sha string) bool {
		if _, ok := s.p.Blocklist[blockKey(comp, sha)]; ok {
			return true
		}
		b, ok := s.p.Blocklist[sha]
		return ok && (b.Component == comp || b.Component == "")
	}
}

// blockKey is the Blocklist key of a release that failed on a component.
func blockKey(comp, sha string) string { return comp + "/" + sha }

func (s *store) block(comp, sha string, br BlockedRelease) {
	if sha == "" {
		return
	}
	s.p.Blocklist[blockKey(comp, sha)] = br
	delete(s.p.Failures, sha)
}

func (s *store) blocklist() []BlockedRelease {
	out := make([]BlockedRelease, 0, len(s.p.Blocklist))
	for _, b := range s.p.Blocklist {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}
