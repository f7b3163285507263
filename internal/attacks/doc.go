// Package attacks is switchback's security suite: one test per attack
// TUF was designed to stop, each driving the real updater (package
// updater) end to end against a signed repository the test builds
// (internal/tuftest), into in-memory A/B slots with a fake bootloader.
package attacks
