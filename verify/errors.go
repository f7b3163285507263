package verify

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns that a caller may branch
// on wraps one of them (test with [errors.Is]); go-tuf's own error values stay
// reachable in the chain through [errors.Is] and [errors.As].
var (
	// ErrNoUpdate means nothing newer than the installed version is
	// published for the component.
	ErrNoUpdate = errors.New("verify: no update available")
	// ErrIncompatible means releases of the component exist but none may be
	// installed (hardware, min_version, downgrade, blocklist); the error
	// text says why each candidate was refused.
	ErrIncompatible = errors.New("verify: no compatible release")
	// ErrVerification means streamed bytes do not match the trusted length
	// or a trusted hash, or cannot be checked against them.
	ErrVerification = errors.New("verify: verification failed")
	// ErrClockUnset means the device clock reads earlier than
	// [Config].MinTime: metadata expiry cannot be judged, so nothing is
	// trusted until the clock is set.
	ErrClockUnset = errors.New("verify: clock not set")
	// ErrUntrusted means the TUF refresh refused the repository's metadata:
	// expired, badly signed, under threshold, rolled back, oversized or
	// malformed. It wraps go-tuf's error.
	ErrUntrusted = errors.New("verify: repository metadata not trusted")
	// ErrFetch means metadata could not be downloaded (network failure, HTTP
	// status other than 200, cancelled context); retrying later may help.
	ErrFetch = errors.New("verify: metadata fetch failed")
	// ErrTargetNotFound means no role trusted for a target path lists it
	// (TUF 5.6.7): the repository does not publish it, or only a role not
	// trusted for the path does.
	ErrTargetNotFound = errors.New("verify: target not found")
)

// Reasons [Select] gives, so that a caller (the device CLI's exit status)
// can tell "up to date" from "nothing here for me" without parsing text.
var (
	// ErrNotPublished means the repository publishes no release of the
	// component at all (a misspelt component name, or the wrong
	// repository). It wraps [ErrNoUpdate].
	ErrNotPublished = fmt.Errorf("%w: no release of the component is published", ErrNoUpdate)
	// ErrBlocked is the reason a release that failed on this device before
	// is refused; it appears inside an [ErrIncompatible] error.
	ErrBlocked = errors.New("blocked after an earlier failure")
	// ErrBadVersion means a version, such as the installed one, is not a
	// semantic version.
	ErrBadVersion = errors.New("not a semantic version")
)
