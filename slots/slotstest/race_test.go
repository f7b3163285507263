//go:build race

package slotstest

// raceEnabled: the test binary runs under the race detector.
const raceEnabled = true
