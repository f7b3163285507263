package repository

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/switchback-ota/switchback/verify"
)

// SetRollout sets (or, with nil, removes) the staged rollout of target path
// in the top-level targets role: the "rollout" field of its custom
// metadata (see [verify.Rollout]). The rollout is validated; other custom
// fields, unknown ones included, are kept. Publish signs the change, so
// halting a rollout is SetRollout with Halted set and one Publish.
func (r *Repo) SetRollout(path string, ro *verify.Rollout) error {
	if ro != nil {
		if err := ro.Validate(); err != nil {
			return fmt.Errorf("repository: target %q: %w", path, err)
		}
	}
	return r.setCustomField(path, "rollout", ro)
}

// SetChannels sets the channels target path is published on, in the
// top-level targets role; none puts it on every channel.
func (r *Repo) SetChannels(path string, channels []string) error {
	if len(channels) == 0 {
		return r.setCustomField(path, "channels", nil)
	}
	channels = slices.Clone(channels)
	slices.Sort(channels)
	return r.setCustomField(path, "channels", slices.Compact(channels))
}

// setCustomField replaces one top-level field of target path's custom
// metadata (removes it when value is a nil pointer or slice), checks the
// result with verify.ParseCustom and stages the targets role.
func (r *Repo) setCustomField(path, field string, value any) error {
	tf, ok := r.targets().Signed.Targets[path]
	if !ok {
		return fmt.Errorf("%w: target %q", ErrNotFound, path)
	}
	fields := map[string]json.RawMessage{}
	if tf.Custom != nil {
		if err := json.Unmarshal(*tf.Custom, &fields); err != nil {
			return fmt.Errorf("repository: target %q custom: %w", path, err)
		}
	}
	b, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	if string(b) == "null" {
		delete(fields, field)
	} else {
		fields[field] = b
	}
	raw, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	if _, err := verify.ParseCustom(raw); err != nil {
		return fmt.Errorf("repository: target %q: %w", path, err)
	}
	r.touch(RoleTargets)
	msg := json.RawMessage(raw)
	tf.Custom = &msg
	return r.stage(RoleTargets)
}
