package main

import (
	"context"
	"fmt"
	"time"
)

// stepsARM64 is the scenario on the arm64 machine, where Debian's U-Boot
// has no boot counter and the shipped boot.cmd counts tries in the
// environment: a good release armed, tried and committed; a release that
// fails health rolled back by the agent; a release whose kernel panics
// abandoned by boot.cmd itself once its tries run out; neither retried.
// (The power cuts and the corrupted download are the x86_64 run's.)
func (s *scenario) stepsARM64() []scenarioStep {
	return []scenarioStep{
		{"factory v1.0.0 boots from slot a (U-Boot, boot.cmd) and is committed", s.factoryBoot},
		{"v2.0.0 published: streamed into slot b, verified, armed in U-Boot's environment, reboot", s.v2Arm},
		{"v2.0.0 trial: boot.cmd takes a try and boots slot b; healthy; committed", s.v2TrialCommit},
		{"v3.0.0 published: installed in slot a, boots, fails health, rolled back to v2.0.0", s.v3HealthRollback},
		{"v4.0.0 installed, kernel panics, boot.cmd falls back to v2.0.0 when its tries run out, agent records it", s.v4Panic},
		{"v3.0.0 and v4.0.0 are never retried", s.noRetry},
	}
}

// v2Arm publishes v2.0.0 and follows its install into slot b up to the
// reboot into the trial.
func (s *scenario) v2Arm(ctx context.Context) error {
	if err := s.publishFound(ctx, "2.0.0"); err != nil {
		return err
	}
	if _, err := s.expectState(ctx, downloadTimeout, "verified", "2.0.0", "failed"); err != nil {
		return err
	}
	return s.expectArmedReboot(ctx, stepTimeout, "2.0.0", "failed")
}

// v2TrialCommit checks that boot.cmd boots the trial slot b with one of
// its two tries used, and that the agent commits v2.0.0.
func (s *scenario) v2TrialCommit(ctx context.Context) error {
	m, err := s.expect(ctx, bootTimeout, grubLineRE)
	if err != nil {
		return err
	}
	s.grubAt = time.Now()
	if m[1] != "b" || m[3] != "b" || m[4] != "1" {
		return fmt.Errorf("U-Boot: %q, want the trial slot b booted with 1 try left", m[0])
	}
	if err := s.expectAgent(ctx, "b", "2.0.0"); err != nil {
		return err
	}
	if _, err := s.expectState(ctx, stepTimeout, "committed", "2.0.0", "rolled-back"); err != nil {
		return err
	}
	if m, err = s.expect(ctx, stepTimeout, agentConfirmRE); err != nil {
		return err
	}
	if m[1] != "ok" {
		return fmt.Errorf("confirmation of v2.0.0: %s", m[0])
	}
	return s.expectStatus(ctx, map[string]string{"installed": "2.0.0", "booted": "b", "primary": "b", "trial": ""})
}

// v3HealthRollback publishes v3.0.0, whose application is missing, and
// follows it as the x86_64 run does once its image is repaired.
func (s *scenario) v3HealthRollback(ctx context.Context) error {
	if _, err := s.publish(ctx, "3.0.0", nil); err != nil {
		return err
	}
	return s.v3Rollback(ctx)
}
