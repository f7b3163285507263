package repository_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/verify"
)

func TestSetRolloutAndChannels(t *testing.T) {
	tr := tuftest.New(t)
	r := tr.Repository()
	raw := json.RawMessage(`{"component":"app","version":"1.0.0","hardware":["*"],"vendor_note":"keep me"}`)
	if _, err := r.AddTargetRaw(context.Background(), "app/a", bytes.NewReader([]byte("a")), raw); err != nil {
		t.Fatal(err)
	}
	ro := &verify.Rollout{Start: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), Salt: "s",
		Ramp: []verify.RampPoint{{After: "0s", Percent: 5}}}
	tests := []struct {
		name    string
		set     func() error
		wantErr error
		check   func(c verify.Custom) bool
	}{
		{"set", func() error { return r.SetRollout("app/a", ro) }, nil,
			func(c verify.Custom) bool { return c.Rollout != nil && c.Rollout.Salt == "s" }},
		{"invalid ramp refused", func() error {
			bad := *ro
			bad.Ramp = []verify.RampPoint{{After: "0s", Percent: 200}}
			return r.SetRollout("app/a", &bad)
		}, verify.ErrBadCustom, func(c verify.Custom) bool { return c.Rollout.Ramp[0].Percent == 5 }},
		{"channels", func() error { return r.SetChannels("app/a", []string{"stable", "beta", "beta"}) }, nil,
			func(c verify.Custom) bool { return len(c.Channels) == 2 && c.Channels[0] == "beta" }},
		{"bad channel refused", func() error { return r.SetChannels("app/a", []string{"B A D"}) }, verify.ErrBadCustom,
			func(c verify.Custom) bool { return len(c.Channels) == 2 }},
		{"clear", func() error { return r.SetRollout("app/a", nil) }, nil,
			func(c verify.Custom) bool { return c.Rollout == nil && len(c.Channels) == 2 }},
		{"unknown target", func() error { return r.SetRollout("app/none", ro) }, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.set()
			if tt.check == nil {
				if err == nil {
					t.Fatal("no error for an unknown target")
				}
				return
			}
			if (tt.wantErr == nil) != (err == nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			tg, err := r.Target("app/a")
			if err != nil {
				t.Fatal(err)
			}
			c, err := verify.ParseCustom(tg.Custom)
			if err != nil || !tt.check(c) || !bytes.Contains(tg.Custom, []byte("keep me")) {
				t.Errorf("custom after %s: %s (%v)", tt.name, tg.Custom, err)
			}
		})
	}
}
