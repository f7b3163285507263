package verify

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Target is one trusted TUF target with its parsed switchback metadata.
type Target struct {
	// Path is the TUF target path, e.g. "app/app-1.2.0.bin".
	Path string
	// Length is the trusted length in bytes.
	Length int64
	// Hashes maps hash algorithm to trusted digest.
	Hashes map[string][]byte
	// Custom is the validated switchback custom metadata.
	Custom Custom
	// URL is where the target's bytes are fetched from: the targets base
	// URL joined with the path, the file name prefixed with its hex digest
	// ("dir/<sha256hex>.name") when the repository uses consistent
	// snapshots.
	URL string
	// Role is the delegated role that listed the target, "" for the
	// top-level targets role.
	Role string
}

// SHA256 returns the hex SHA-256 of the target, the key of the blocklist,
// or "" if the metadata lists no sha256.
func (t Target) SHA256() string {
	if d, ok := t.Hashes[SHA256]; ok {
		return hex.EncodeToString(d)
	}
	return ""
}

// Verifier returns a [Verifier] for the target's bytes as they are fetched.
func (t Target) Verifier() (*Verifier, error) {
	v, err := NewVerifier(t.Length, t.Hashes)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.Path, err)
	}
	return v, nil
}

// Policy says which release a device may install for one component.
type Policy struct {
	// Component is the component to update, matched against Custom.Component.
	Component string
	// Hardware is the device's hardware id; a release must list it or "*".
	Hardware string
	// Installed is the installed version of the component, "" if none. A
	// release with a min_version needs an installed version.
	Installed string
	// AllowDowngrade lets a version lower than the installed one be chosen
	// when no release of the component for this hardware is published at
	// or above the installed version (the installed release was pulled);
	// the newest that fits still wins. While the installed version, or a
	// newer one, is published for this hardware (even one that is blocked
	// or does not fit), nothing lower is chosen: a device never alternates
	// between two published releases.
	AllowDowngrade bool
	// Blocked reports whether the release with this hex SHA-256 failed
	// before and must not be retried; nil blocks nothing.
	Blocked func(sha256hex string) bool
	// DeviceID is the device's stable id, used only to compute its
	// [Bucket] in a staged [Rollout]; it is never sent anywhere.
	DeviceID string
	// Now is the trusted current time for staged rollouts: the device
	// clock once checked against the MinTime. Zero (clock unset) takes no
	// release that has a rollout.
	Now time.Time
	// Channel is the channel the device follows; "" means "stable". A
	// release that lists channels is taken only by devices following one
	// of them; a release that lists none is on every channel.
	Channel string
	// Pin, when set, holds the device at this version: only a release of
	// exactly this version is chosen; every other is not an update. A pin
	// below the installed version is reached only with AllowDowngrade.
	Pin string
}

// DefaultChannel is the channel of a device whose [Policy].Channel is "".
const DefaultChannel = "stable"

// Select picks the newest full image (Kind "" or [KindImage]) of
// p.Component that fits the policy: its hardware list holds p.Hardware or
// "*", its min_version is at most p.Installed, it is newer than p.Installed
// (or, with AllowDowngrade, lower when nothing at or above p.Installed is
// published for p.Hardware), and it is not blocked.
// Versions are ordered by [CompareVersions]; among equal versions a release
// naming the hardware explicitly beats a "*" one, then the smaller path wins.
//
// When no release of the component is newer than the installed one (or none
// is published), Select returns an error wrapping [ErrNoUpdate]. When newer
// ones exist but none fits, the error wraps [ErrIncompatible] and says why
// each was refused; [ErrBlocked] is reachable through it when a release was
// refused for an earlier failure. When no release of the component is
// published at all, the error wraps [ErrNotPublished] (and ErrNoUpdate). An
// installed version that is not a semantic version is an error wrapping
// [ErrBadVersion].
func Select(targets []Target, p Policy) (Target, error) {
	if p.Installed != "" && !ValidVersion(p.Installed) {
		return Target{}, fmt.Errorf("verify: installed version %q of %s is %w", p.Installed, p.Component, ErrBadVersion)
	}
	if p.Pin != "" && !ValidVersion(p.Pin) {
		return Target{}, fmt.Errorf("verify: pinned version %q of %s is %w", p.Pin, p.Component, ErrBadVersion)
	}
	downgrade := p.AllowDowngrade && p.Installed != "" &&
		(!publishedAtOrAbove(targets, p) || (p.Pin != "" && CompareVersions(p.Pin, p.Installed) < 0))
	var (
		best     *Target
		refused  refusals
		newest   string // newest version published for the component
		numImage int
	)
	for i := range targets {
		t := &targets[i]
		c := t.Custom
		if c.Component != p.Component || (c.Kind != "" && c.Kind != KindImage) {
			continue
		}
		numImage++
		if newest == "" || CompareVersions(c.Version, newest) > 0 {
			newest = c.Version
		}
		if p.Pin != "" && CompareVersions(c.Version, p.Pin) != 0 {
			continue // held at the pin: not an update
		}
		if p.Installed != "" {
			cmp := CompareVersions(c.Version, p.Installed)
			if cmp == 0 || (cmp < 0 && !downgrade) {
				continue // not an update: never a reason for ErrIncompatible
			}
		}
		if reason := refuse(*t, p); reason != nil {
			refused = append(refused, fmt.Errorf("%s (%s): %w", t.Path, c.Version, reason))
			continue
		}
		if best == nil || better(*t, *best, p.Hardware) {
			best = t
		}
	}
	switch {
	case best != nil:
		return *best, nil
	case len(refused) > 0:
		return Target{}, fmt.Errorf("%w for %s on %s (installed %q): %w",
			ErrIncompatible, p.Component, p.Hardware, p.Installed, refused)
	case numImage == 0:
		return Target{}, fmt.Errorf("%w: %s", ErrNotPublished, p.Component)
	default:
		return Target{}, fmt.Errorf("%w: %s %s installed, newest published %s", ErrNoUpdate, p.Component, p.Installed, newest)
	}
}

// refusals are the reasons Select refused each candidate: one error whose
// text lists them all and through which errors.Is finds each reason.
type refusals []error

func (r refusals) Error() string {
	s := make([]string, len(r))
	for i, err := range r {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (r refusals) Unwrap() []error { return r }

// publishedAtOrAbove reports whether a full image of p.Component for
// p.Hardware (listed or "*") is published at or above p.Installed.
func publishedAtOrAbove(targets []Target, p Policy) bool {
	for _, t := range targets {
		c := t.Custom
		if c.Component != p.Component || (c.Kind != "" && c.Kind != KindImage) {
			continue
		}
		if !slices.Contains(c.Hardware, p.Hardware) && !slices.Contains(c.Hardware, "*") {
			continue
		}
		if CompareVersions(c.Version, p.Installed) >= 0 {
			return true
		}
	}
	return false
}

// refuse returns why t may not be installed under p, or nil.
func refuse(t Target, p Policy) error {
	c := t.Custom
	if err := c.Validate(); err != nil {
		return err
	}
	if !slices.Contains(c.Hardware, p.Hardware) && !slices.Contains(c.Hardware, "*") {
		return fmt.Errorf("hardware %q not in %q", p.Hardware, c.Hardware)
	}
	if c.MinVersion != "" {
		if p.Installed == "" {
			return fmt.Errorf("min_version %s needs an installed version", c.MinVersion)
		}
		if CompareVersions(p.Installed, c.MinVersion) < 0 {
			return fmt.Errorf("installed %s is below min_version %s", p.Installed, c.MinVersion)
		}
	}
	if len(c.Channels) > 0 {
		ch := p.Channel
		if ch == "" {
			ch = DefaultChannel
		}
		if !slices.Contains(c.Channels, ch) {
			return fmt.Errorf("channel %q not in %q", ch, c.Channels)
		}
	}
	if r := c.Rollout; r != nil {
		if r.Halted {
			return ErrHalted
		}
		if !r.Offered(p.DeviceID, p.Now) {
			return fmt.Errorf("%w (share %.2f%% at %s)", ErrNotYet, r.Share(p.Now), p.Now.UTC().Format(time.RFC3339))
		}
	}
	if p.Blocked != nil {
		if sum := t.SHA256(); sum == "" {
			return errors.New("no sha256 to check against the blocklist")
		} else if p.Blocked(sum) {
			return ErrBlocked
		}
	}
	return nil
}

// better reports whether a should be preferred over b.
func better(a, b Target, hardware string) bool {
	if c := CompareVersions(a.Custom.Version, b.Custom.Version); c != 0 {
		return c > 0
	}
	ea, eb := slices.Contains(a.Custom.Hardware, hardware), slices.Contains(b.Custom.Hardware, hardware)
	if ea != eb {
		return ea
	}
	return a.Path < b.Path
}

// ImageDigest returns the length and SHA-256 of the image t installs: its
// Uncompressed digest when it has one (compressed targets), else its own
// length and sha256. ok is false when neither is known.
func (t Target) ImageDigest() (d Digest, ok bool) {
	if u := t.Custom.Uncompressed; u != nil && t.Custom.Kind != KindPatch {
		return Digest{Length: u.Length, SHA256: strings.ToLower(u.SHA256)}, true
	}
	if sum := t.SHA256(); sum != "" {
		return Digest{Length: t.Length, SHA256: sum}, true
	}
	return Digest{}, false
}

// SelectPatch returns the smallest patch ([KindPatch]) that turns the
// installed image, whose hex SHA-256 is base, into image: same component
// and version, Of naming image's path, Base equal to base, a format
// accepted by formatOK (nil accepts any), and an Uncompressed digest equal
// to image's [Target.ImageDigest], so that the patched output is checked
// against the image's own trusted digest. ok is false when none fits; the
// caller then fetches image in full.
func SelectPatch(targets []Target, image Target, base string, formatOK func(format string) bool) (patch Target, ok bool) {
	want, known := image.ImageDigest()
	if !known {
		return Target{}, false
	}
	for _, t := range targets {
		c := t.Custom
		if c.Kind != KindPatch || c.Of != image.Path || c.Component != image.Custom.Component ||
			CompareVersions(c.Version, image.Custom.Version) != 0 || !strings.EqualFold(c.Base, base) ||
			c.Uncompressed == nil || c.Uncompressed.Length != want.Length ||
			!strings.EqualFold(c.Uncompressed.SHA256, want.SHA256) || c.Validate() != nil {
			continue
		}
		if formatOK != nil && !formatOK(c.Format) {
			continue
		}
		if !ok || t.Length < patch.Length || (t.Length == patch.Length && t.Path < patch.Path) {
			patch, ok = t, true
		}
	}
	return patch, ok
}

// SelectChunkIndex returns the chunk index ([KindChunkIndex]) of image:
// same component and version, Of naming image's path, a format accepted by
// formatOK (nil accepts any); the smallest path wins if several fit. ok is
// false when there is none.
func SelectChunkIndex(targets []Target, image Target, formatOK func(format string) bool) (index Target, ok bool) {
	for _, t := range targets {
		c := t.Custom
		if c.Kind != KindChunkIndex || c.Of != image.Path || c.Component != image.Custom.Component ||
			CompareVersions(c.Version, image.Custom.Version) != 0 || c.Validate() != nil {
			continue
		}
		if formatOK != nil && !formatOK(c.Format) {
			continue
		}
		if !ok || t.Path < index.Path {
			index, ok = t, true
		}
	}
	return index, ok
}
