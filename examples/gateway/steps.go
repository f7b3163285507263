package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

// update checks, installs every update found and confirms; it returns
// the components updated.
func update(ctx context.Context, u *updater.Updater) ([]string, error) {
	ups, err := u.Check(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, up := range ups {
		if err := u.Install(ctx, up); err != nil {
			return names, err
		}
		names = append(names, up.Component+" "+up.To)
	}
	return names, u.Confirm(ctx)
}

// installed is the committed version of each component.
func installed(ctx context.Context, u *updater.Updater) (map[string]string, error) {
	st, err := u.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, c := range st.Components {
		out[c.Name] = c.Installed
	}
	return out, nil
}

func (w *world) gatewayUpdatesItself(ctx context.Context) error {
	if err := w.publish(ctx, "app/gateway-1.1.0", []byte("gateway app 1.1.0\n"), verify.Custom{Component: "app", Version: "1.1.0", Hardware: []string{gatewayHW}}); err != nil {
		return err
	}
	w.tr.say("cloud: published app 1.1.0 for %s", gatewayHW)
	if _, err := update(ctx, w.gatewayApp); err != nil {
		return fmt.Errorf("gateway self-update: %w", err)
	}
	v, err := installed(ctx, w.gatewayApp)
	if err != nil || v["app"] != "1.1.0" {
		return fmt.Errorf("gateway runs %v (%v), want app 1.1.0", v, err)
	}
	w.tr.say("gateway: updated itself from the cloud: app 1.1.0 committed")
	return nil
}

func (w *world) edgeDevicesUpdateWithUplinkDown(ctx context.Context) error {
	if err := w.publish(ctx, "app/edge-1.1.0", []byte("edge app 1.1.0\n"), verify.Custom{Component: "app", Version: "1.1.0", Hardware: []string{edgeHW}}); err != nil {
		return err
	}
	if err := w.publish(ctx, "sensor/a-1.1.0.bin", firmware("sensor-a", 1), verify.Custom{Component: "sensor-fw", Version: "1.1.0", Hardware: []string{"sensor-a"}}); err != nil {
		return err
	}
	w.tr.say("cloud: published app 1.1.0 for %s and sensor-fw 1.1.0 for sensor-a", edgeHW)
	if err := w.refreshRelay(ctx); err != nil {
		return fmt.Errorf("relay refresh: %w", err)
	}
	st := w.relay.Stats()
	w.tr.say("gateway: relay verified the metadata and prefetched the targets for its devices (%+v)", st)
	w.uplinkCut.Store(true)
	hits := w.cloudHits.Load()
	w.tr.say("uplink: CUT — the cloud is unreachable from here on")
	for i, u := range w.edges {
		if _, err := update(ctx, u); err != nil {
			return fmt.Errorf("edge-%d: %w", i+1, err)
		}
		v, err := installed(ctx, u)
		if err != nil || v["app"] != "1.1.0" {
			return fmt.Errorf("edge-%d runs %v (%v), want app 1.1.0", i+1, v, err)
		}
		w.tr.say("edge-%d: app 1.1.0 committed, fetched from the relay with the uplink down", i+1)
	}
	if n := w.cloudHits.Load() - hits; n != 0 {
		return fmt.Errorf("%d requests reached the cloud while the uplink was down", n)
	}
	return nil
}

func (w *world) mcusOfKindAUpdate(ctx context.Context) error {
	names, err := update(ctx, w.mcuUp)
	if err != nil {
		return fmt.Errorf("MCU update: %w", err)
	}
	w.tr.say("gateway: sensor-fw updates found and confirmed: %s", strings.Join(names, ", "))
	run := w.running()
	w.tr.say("MCUs run: %s", describe(run))
	if run["sensor-a1"] != "1.1.0" || run["sensor-a2"] != "1.1.0" || run["sensor-b1"] != "1.0.0" {
		return fmt.Errorf("MCUs run %v; want sensor-a at 1.1.0 and sensor-b1 still at 1.0.0", run)
	}
	w.tr.say("sensor-b1 never received the sensor-a firmware (its hardware id is sensor-b)")
	gets := w.targetGets("a-1.1.0.bin")
	if gets != 1 {
		return fmt.Errorf("the sensor-a image was requested %d times from the relay, want once", gets)
	}
	w.tr.say("gateway: the sensor-a image crossed the network once for 2 MCUs (staged, then read locally)")
	return nil
}

func (w *world) crashingFirmwareReverted(ctx context.Context) error {
	w.uplinkCut.Store(false)
	w.tr.say("uplink: restored")
	if err := w.publish(ctx, "sensor/a-1.2.0.bin", firmware("sensor-a", 2), verify.Custom{Component: "sensor-fw", Version: "1.2.0", Hardware: []string{"sensor-a"}}); err != nil {
		return err
	}
	w.tr.say("cloud: published sensor-fw 1.2.0 for sensor-a (it crashes at start)")
	if err := w.refreshRelay(ctx); err != nil {
		return fmt.Errorf("relay refresh: %w", err)
	}
	_, err := update(ctx, w.mcuUp)
	if !errors.Is(err, updater.ErrRolledBack) {
		return fmt.Errorf("update to the crashing 1.2.0: %v, want a rollback", err)
	}
	w.tr.say("gateway: sensor-fw 1.2.0 rolled back: %s", firstLine(err.Error()))
	run := w.running()
	w.tr.say("MCUs run: %s", describe(run))
	if run["sensor-a1"] != "1.1.0" || run["sensor-a2"] != "1.1.0" {
		return fmt.Errorf("MCUs run %v after the revert, want sensor-a at 1.1.0", run)
	}
	st, err := w.mcuUp.Status(ctx)
	if err != nil {
		return err
	}
	for _, b := range st.Blocklist {
		w.tr.say("gateway: blocklisted sensor-fw %s on %s", b.Version, b.Component)
	}
	if len(st.Blocklist) != 2 {
		return fmt.Errorf("blocklist %+v, want 1.2.0 on sensor-a1 and sensor-a2", st.Blocklist)
	}
	if _, err := w.mcuUp.Check(ctx); !errors.Is(err, updater.ErrNoUpdate) {
		return fmt.Errorf("check after the revert: %v, want no update (1.2.0 is blocklisted)", err)
	}
	w.tr.say("gateway: sensor-fw 1.2.0 is not retried")
	return nil
}

func (w *world) tamperedRelayRefused(ctx context.Context) error {
	if err := w.publish(ctx, "app/edge-1.2.0", []byte("edge app 1.2.0\n"), verify.Custom{Component: "app", Version: "1.2.0", Hardware: []string{edgeHW}}); err != nil {
		return err
	}
	if err := w.refreshRelay(ctx); err != nil {
		return fmt.Errorf("relay refresh: %w", err)
	}
	w.tamper.Store(true)
	defer w.tamper.Store(false)
	w.tr.say("gateway: compromised — the relay now alters the files it serves")
	_, err := update(ctx, w.edges[0])
	if !errors.Is(err, verify.ErrVerification) {
		return fmt.Errorf("edge-1 with a tampering relay: %v, want a verification failure", err)
	}
	v, ierr := installed(ctx, w.edges[0])
	if ierr != nil || v["app"] != "1.1.0" {
		return fmt.Errorf("edge-1 runs %v (%v), want app 1.1.0", v, ierr)
	}
	w.tr.say("edge-1: tampered app 1.2.0 refused (%s); still on 1.1.0", firstLine(err.Error()))
	return nil
}

// targetGets is the number of target requests the relay answered whose
// path ends with suffix.
func (w *world) targetGets(suffix string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for p, c := range w.relayGets {
		if strings.HasSuffix(p, suffix) {
			n += c
		}
	}
	return n
}

func describe(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+m[k])
	}
	return strings.Join(parts, ", ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
