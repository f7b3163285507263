package slots

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// swapStateVersion is the version of the sidecar state format written by
// this package. A sidecar of another version is refused rather than
// guessed at.
const swapStateVersion = 1

// swapSlotNames are the names of the two slots of a file or directory slot.
var swapSlotNames = []string{"a", "b"}

// maxTries bounds the tries of a trial, to catch corrupt values.
const maxTries = 1000

// swapState is the durable record of a swap control: which slot is
// committed, which is on trial with how many starts left, and which are
// bad. It is stored as JSON in the state directory; slot names are
// strings, never numbers.
type swapState struct {
	Version   int      `json:"version"`
	Primary   string   `json:"primary"`
	Trial     string   `json:"trial,omitempty"`
	TriesLeft int      `json:"tries_left"`
	Bad       []string `json:"bad,omitempty"`
}

// parseSwapState decodes and validates a sidecar: its version, that every
// slot it names is one of names, and that trial and tries agree.
func parseSwapState(data []byte, names []string) (swapState, error) {
	var s swapState
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&s); err != nil {
		return swapState{}, fmt.Errorf("decoding swap state: %w", err)
	}
	if dec.More() {
		return swapState{}, fmt.Errorf("decoding swap state: trailing data after the JSON object")
	}
	if err := s.validate(names); err != nil {
		return swapState{}, err
	}
	return s, nil
}

func (s swapState) validate(names []string) error {
	if s.Version != swapStateVersion {
		return fmt.Errorf("swap state version %d, want %d", s.Version, swapStateVersion)
	}
	if !slices.Contains(names, s.Primary) {
		return fmt.Errorf("swap state: primary slot %q is not one of %q", s.Primary, names)
	}
	switch {
	case s.Trial == "" && s.TriesLeft != 0:
		return fmt.Errorf("swap state: %d tries left but no trial", s.TriesLeft)
	case s.Trial != "" && !slices.Contains(names, s.Trial):
		return fmt.Errorf("swap state: trial slot %q is not one of %q", s.Trial, names)
	case s.Trial != "" && s.Trial == s.Primary:
		return fmt.Errorf("swap state: slot %q is both primary and trial", s.Trial)
	case s.TriesLeft < 0 || s.TriesLeft > maxTries:
		return fmt.Errorf("swap state: %d tries left, want 0 to %d", s.TriesLeft, maxTries)
	}
	for i, b := range s.Bad {
		if !slices.Contains(names, b) {
			return fmt.Errorf("swap state: bad slot %q is not one of %q", b, names)
		}
		if slices.Contains(s.Bad[:i], b) {
			return fmt.Errorf("swap state: slot %q listed bad twice", b)
		}
		if b == s.Trial {
			return fmt.Errorf("swap state: trial slot %q is marked bad", b)
		}
	}
	return nil
}

// marshal encodes the state, which must be valid.
func (s swapState) marshal() []byte {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		// A struct of strings and ints always encodes.
		panic(err)
	}
	return append(data, '\n')
}

// Pure transitions. Each returns the new state; the caller writes it.

func (s swapState) arm(slot string, tries int) swapState {
	s.Trial, s.TriesLeft = slot, tries
	s.Bad = withoutSlot(s.Bad, slot)
	return s
}

func (s swapState) commit(slot string) swapState {
	s.Primary, s.Trial, s.TriesLeft = slot, "", 0
	s.Bad = withoutSlot(s.Bad, slot)
	return s
}

func (s swapState) markBad(slot string) swapState {
	if s.Trial == slot {
		s.Trial, s.TriesLeft = "", 0
	}
	if !slices.Contains(s.Bad, slot) {
		s.Bad = append(slices.Clone(s.Bad), slot)
	}
	return s
}

// start consumes one try of the trial, or ends an exhausted trial by
// marking it bad. It returns the new state and the slot that must start.
func (s swapState) start() (swapState, string) {
	if s.Trial == "" {
		return s, s.Primary
	}
	if s.TriesLeft > 0 {
		s.TriesLeft--
		return s, s.Trial
	}
	s = s.markBad(s.Trial)
	return s, s.Primary
}

// target is the slot the symlink belongs to in this state: an armed
// trial (even on its last try, which is running), else the primary.
func (s swapState) target() string {
	if s.Trial != "" {
		return s.Trial
	}
	return s.Primary
}

func (s swapState) equal(o swapState) bool {
	return s.Version == o.Version && s.Primary == o.Primary && s.Trial == o.Trial &&
		s.TriesLeft == o.TriesLeft && slices.Equal(s.Bad, o.Bad)
}

func withoutSlot(list []string, slot string) []string {
	out := slices.DeleteFunc(slices.Clone(list), func(x string) bool { return x == slot })
	if len(out) == 0 {
		return nil
	}
	return out
}
