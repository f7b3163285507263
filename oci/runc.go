package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Runc runs the image of a [Component]'s booted slot with runc, as the
// updater's restart hook, and checks it. Tests and examples use it as
// root; runc needs root (or a rootless setup) to create namespaces.
type Runc struct {
	// Component is the component whose booted slot runs.
	Component *Component
	// ID names the container ("gateway-app").
	ID string
	// Binary is the runc executable; "" is "runc" from PATH.
	Binary string
	// Check, when set, is a command run inside the container by
	// HealthCheck ("wget -q -O- http://127.0.0.1:8080/healthz"); its
	// exit status 0 means healthy.
	Check []string
}

func (r *Runc) bin() string {
	if r.Binary == "" {
		return "runc"
	}
	return r.Binary
}

func (r *Runc) run(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, r.bin(), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("oci: runc %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Stop kills and deletes the container, if there is one.
func (r *Runc) Stop(ctx context.Context) error {
	if _, err := r.State(ctx); err != nil {
		return nil
	}
	_, err := r.run(ctx, "delete", "--force", r.ID)
	return err
}

// Restart stops the container and starts the booted slot's image, if
// that slot holds one. It is the Config.Restart hook of the updater for
// this component (the component name is not needed).
func (r *Runc) Restart(ctx context.Context, _ string) error {
	if err := r.Stop(ctx); err != nil {
		return err
	}
	st, err := r.Component.Status(ctx)
	if err != nil {
		return err
	}
	if !r.Component.HasImage(st.Booted) {
		return nil
	}
	bundle := r.Component.Bundle(st.Booted)
	log, err := os.OpenFile(filepath.Join(bundle, "container.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, r.bin(), "run", "--detach", "--bundle", bundle, r.ID)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("oci: runc run %s (slot %s): %w", r.ID, st.Booted, err)
	}
	return nil
}

// State returns runc's status of the container: "running", "stopped"…
func (r *Runc) State(ctx context.Context) (string, error) {
	out, err := r.run(ctx, "state", r.ID)
	if err != nil {
		return "", err
	}
	var s struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return "", fmt.Errorf("oci: runc state: %w", err)
	}
	return s.Status, nil
}

// HealthCheck returns a check (a health.HealthCheck) that the container
// is running and, when r.Check is set, that its own check succeeds.
func (r *Runc) HealthCheck() *RuncCheck { return &RuncCheck{r: r} }

// RuncCheck is the check [Runc.HealthCheck] returns.
type RuncCheck struct{ r *Runc }

// Name is "runc:<id>".
func (c *RuncCheck) Name() string { return "runc:" + c.r.ID }

// Check fails unless the container runs and answers its own check.
func (c *RuncCheck) Check(ctx context.Context) error {
	st, err := c.r.State(ctx)
	if err != nil {
		return err
	}
	if st != "running" {
		return fmt.Errorf("oci: container %s is %s", c.r.ID, st)
	}
	if len(c.r.Check) == 0 {
		return nil
	}
	_, err = c.r.run(ctx, append([]string{"exec", c.r.ID}, c.r.Check...)...)
	return err
}
