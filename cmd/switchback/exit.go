package main

import (
	"errors"
	"reflect"
	"strings"

	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// Exit statuses, documented in `switchback -h` and doc.go. Scripts branch
// on them: each class of "nothing installed" has its own.
const (
	exitOK           = 0 // done; for check and install also "up to date"
	exitFailure      = 1 // anything else: network, verification, storage; confirm: rolled back
	exitUsage        = 2 // bad command line
	exitConfig       = 3 // the configuration file, the trusted root, a version that is not semver
	exitNotPublished = 4 // the repository publishes no release of a configured component
	exitIncompatible = 5 // releases exist, none for this device (hardware, min_version, component)
	exitBlocked      = 6 // the newest release for this device failed here before
)

// usageError is a bad command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// configError is a configuration the device cannot run with.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// exitCode is the exit status for what a command returned. When the
// components' reasons differ, the first of 3, 6, 5, 4 that applies wins:
// the device's own configuration, then a release for this device that
// failed here, then releases for other devices, then none published.
func exitCode(err error) int {
	var ue usageError
	var ce configError
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ce), errors.Is(err, verify.ErrBadVersion):
		return exitConfig
	case errors.Is(err, verify.ErrBlocked):
		return exitBlocked
	case errors.Is(err, verify.ErrIncompatible):
		return exitIncompatible
	case errors.Is(err, verify.ErrNotPublished):
		return exitNotPublished
	}
	return exitFailure
}

// describe is the message for an error: what it means for the device,
// then the details.
func describe(err error, code int) string {
	lead := map[int]string{
		exitNotPublished: "the repository publishes no release of a configured component",
		exitIncompatible: "no release for this device",
		exitBlocked:      "the newest release for this device failed here before (blocklisted; see switchback status)",
	}[code]
	if errors.Is(err, verify.ErrBadVersion) {
		lead = "an installed or factory_version is not a semantic version"
	}
	if lead == "" {
		return err.Error()
	}
	return lead + ": " + err.Error()
}

// upToDate reports whether err means only "nothing newer is published":
// not a reason that needs a human.
func upToDate(err error) bool {
	return errors.Is(err, updater.ErrNoUpdate) && exitCode(err) == exitFailure
}

// configField is one setting of the configuration file.
type configField struct{ goName, key string }

// configFields lists the keys of the configuration file (every level),
// from the structs' json tags.
func configFields() []configField {
	var out []configField
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for f := range t.Fields() {
			if key, _, _ := strings.Cut(f.Tag.Get("json"), ","); key != "" {
				out = append(out, configField{f.Name, key})
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[fileConfig]())
	return out
}
