package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Rollout is a staged rollout of one release, carried in the target's
// signed custom metadata under "rollout", so that neither a mirror nor a
// compromised server can speed it up or aim it at a chosen device: every
// device decides for itself, from the signed policy, its own id and its
// clock.
//
// The JSON form is
//
//	"rollout": {
//	  "start": "2026-12-07T00:00:00Z",
//	  "salt": "rel-1.4.0-7f3a",
//	  "ramp": [{"after": "0s", "percent": 1}, {"after": "24h", "percent": 10},
//	           {"after": "72h", "percent": 100}],
//	  "halted": false
//	}
//
// A device's bucket is a number in [0, 100) derived from SHA-256 of its
// device id and the salt (see [Bucket]); a new salt per release gives each
// release independent cohorts. The share of the fleet offered the release
// at time t is 0 before start + ramp[0].after, then grows linearly between
// consecutive ramp points and holds at the last point's percent; a device
// takes the release when its bucket is below the share ([Rollout.Offered]).
// A halted rollout is offered to nobody: devices that installed it keep it
// (it is their installed version), the others stop taking it at their next
// check. Halting is one re-signed targets file.
type Rollout struct {
	// Start is when the ramp begins (RFC 3339). Required.
	Start time.Time `json:"start"`
	// Salt makes the cohorts of this release independent of every other
	// release's. Required, 1 to 64 bytes.
	Salt string `json:"salt"`
	// Ramp lists the share of the fleet offered the release over time.
	// Required, 1 to 32 points, strictly increasing in After and not
	// decreasing in Percent.
	Ramp []RampPoint `json:"ramp"`
	// Halted stops the rollout: no device that has not installed the
	// release takes it.
	Halted bool `json:"halted,omitempty"`
}

// RampPoint is one point of a [Rollout] ramp.
type RampPoint struct {
	// After is the time since the rollout's start, a Go duration string
	// such as "24h" or "90m", at least "0s".
	After string `json:"after"`
	// Percent is the share of the fleet offered the release at After,
	// 0 to 100.
	Percent float64 `json:"percent"`
}

// ErrNotYet is the reason a release under a staged rollout is refused by a
// device whose bucket is not (or not yet) in the rollout, or whose clock
// is unset or before the start; it appears inside an [ErrIncompatible]
// error.
var ErrNotYet = errors.New("not yet rolled out to this device")

// ErrHalted is the reason a release whose rollout is halted is refused; it
// appears inside an [ErrIncompatible] error.
var ErrHalted = errors.New("rollout halted")

const (
	maxSalt      = 64
	maxRampPoint = 32
)

// Validate reports what is malformed in r.
func (r *Rollout) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: rollout: "+format, append([]any{ErrBadCustom}, a...)...))
	}
	if r.Start.IsZero() {
		bad("start missing")
	}
	if r.Salt == "" || len(r.Salt) > maxSalt {
		bad("salt must be 1 to %d bytes", maxSalt)
	}
	if len(r.Ramp) == 0 || len(r.Ramp) > maxRampPoint {
		bad("ramp must have 1 to %d points", maxRampPoint)
	}
	prevAfter, prevPct := time.Duration(-1), 0.0
	for i, p := range r.Ramp {
		d, err := time.ParseDuration(p.After)
		switch {
		case err != nil:
			bad("ramp[%d].after %q: %v", i, p.After, err)
		case d < 0:
			bad("ramp[%d].after %q is negative", i, p.After)
		case d <= prevAfter:
			bad("ramp[%d].after %q is not after the previous point", i, p.After)
		}
		prevAfter = d
		if math.IsNaN(p.Percent) || p.Percent < 0 || p.Percent > 100 {
			bad("ramp[%d].percent %v is not in [0, 100]", i, p.Percent)
		} else if p.Percent < prevPct {
			bad("ramp[%d].percent %v decreases", i, p.Percent)
		} else {
			prevPct = p.Percent
		}
	}
	return errors.Join(errs...)
}

// Share returns the percentage of the fleet offered the release at now: 0
// when halted, when now is zero (clock unset) or before the first point.
// r must be valid.
func (r *Rollout) Share(now time.Time) float64 {
	if r.Halted || now.IsZero() || len(r.Ramp) == 0 {
		return 0
	}
	since := now.Sub(r.Start)
	share := 0.0
	for i, p := range r.Ramp {
		d, _ := time.ParseDuration(p.After)
		if since < d {
			if i == 0 {
				return 0
			}
			prev := r.Ramp[i-1]
			pd, _ := time.ParseDuration(prev.After)
			frac := float64(since-pd) / float64(d-pd)
			return prev.Percent + frac*(p.Percent-prev.Percent)
		}
		share = p.Percent
	}
	return share
}

// Offered reports whether the device with this id takes the release at
// now: its [Bucket] is below [Rollout.Share]. A device without an id is
// offered the release only once the share reaches 100.
func (r *Rollout) Offered(deviceID string, now time.Time) bool {
	share := r.Share(now)
	if share >= 100 {
		return true
	}
	if deviceID == "" {
		return false
	}
	return Bucket(deviceID, r.Salt) < share
}

// Bucket returns the device's bucket for a salt, uniform in [0, 100): the
// first 8 bytes of SHA-256(len(id) ‖ id ‖ salt) as a fraction of 2^64,
// times 100. The id never leaves the device.
func Bucket(deviceID, salt string) float64 {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(deviceID)))
	h.Write(n[:])
	h.Write([]byte(deviceID))
	h.Write([]byte(salt))
	sum := h.Sum(nil)
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53) * 100
}

// UnmarshalJSON decodes a rollout strictly: an unknown field (a misspelt
// "halted", say) is an error rather than silently ignored.
func (r *Rollout) UnmarshalJSON(b []byte) error {
	type plain Rollout
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	if dec.More() {
		return errors.New("rollout: trailing data")
	}
	*r = Rollout(p)
	return nil
}
