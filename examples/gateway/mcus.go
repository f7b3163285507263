package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
	"github.com/switchback-ota/switchback/updater"
)

// firmware builds an MCUboot image of sensor-fw for a kind of MCU.
func firmware(kind string, minor uint8) []byte {
	body := make([]byte, 24_000)
	copy(body, fmt.Sprintf("sensor-fw 1.%d.0 for %s", minor, kind))
	return smptest.BuildImage(body, smptest.ImageOptions{Version: smp.ImageVersion{Major: 1, Minor: minor}})
}

// startMCUs starts three simulated MCUs (SMP over DTLS on 127.0.0.1) and
// the gateway's updater for them: one component each, all following the
// release line "sensor-fw", each with its own hardware id. Firmware 1.2.0
// crashes at start.
func (w *world) startMCUs(context.Context) error {
	var comps []updater.Component
	var checks []health.HealthCheck
	for _, spec := range []struct{ name, kind string }{{"sensor-a1", "sensor-a"}, {"sensor-a2", "sensor-a"}, {"sensor-b1", "sensor-b"}} {
		m, err := w.startMCU(spec.name, spec.kind)
		if err != nil {
			return err
		}
		w.mcus = append(w.mcus, m)
		comps = append(comps, updater.Component{Name: m.name, Release: "sensor-fw", Hardware: m.kind,
			Slots: m.dev.Slots(), Boot: m.dev, FactoryVersion: "1.0.0"})
		checks = append(checks, trialCheck(m.dev))
	}
	byName := map[string]*smp.Device{}
	for _, m := range w.mcus {
		byName[m.name] = m.dev
	}
	u, err := updater.New(updater.Config{
		Hardware: gatewayHW, StateDir: filepath.Join(w.work, "gateway", "mcu-state"), TrustedRoot: w.root,
		MetadataURL: w.relayURL + relay.MetadataPrefix, TargetsURL: w.relayURL + relay.TargetsPrefix, CAFile: w.caFile,
		Components: comps, HealthChecks: checks, ConfirmTimeout: 30 * time.Second,
		Restart: func(ctx context.Context, comp string) error { return byName[comp].Reset(ctx) },
		Events: func(e updater.Event) {
			if sc, ok := e.(updater.StateChanged); ok && sc.From != sc.To {
				w.tr.say("  %s: sensor-fw %s %s → %s", sc.Component, sc.Version, sc.From, sc.To)
			}
		},
	})
	w.mcuUp = u
	w.tr.say("gateway: MCUs sensor-a1, sensor-a2 (kind sensor-a) and sensor-b1 (kind sensor-b) over SMP on DTLS, release line sensor-fw")
	return err
}

func (w *world) startMCU(name, kind string) (*mcu, error) {
	sim, err := smptest.New(smptest.Config{Dir: filepath.Join(w.work, "mcu", name), Factory: firmware(kind, 0),
		App: func(im *smp.Image) smptest.Behavior { return smptest.Behavior{Crash: im.Version.Minor == 2} }})
	if err != nil {
		return nil, err
	}
	psk := &smp.DTLSConfig{PSKIdentity: []byte(name), PSK: []byte("psk of " + name + " ....")}
	addr, err := sim.ServeDTLS("127.0.0.1:0", psk)
	if err != nil {
		sim.Close()
		return nil, err
	}
	udp, err := smp.NewUDP(smp.UDPConfig{Addr: addr, DTLS: psk})
	if err != nil {
		sim.Close()
		return nil, err
	}
	dev, err := smp.New(smp.Config{Name: name, Dir: filepath.Join(w.work, "gateway", "mcu", name), Transport: udp, ResetGrace: 10 * time.Millisecond})
	if err != nil {
		sim.Close()
		return nil, err
	}
	return &mcu{name: name, kind: kind, sim: sim, dev: dev}, nil
}

// trialCheck runs the device's image check while it runs a trial image:
// the MCU answers and reports the image the gateway put there.
func trialCheck(dev *smp.Device) health.HealthCheck {
	ic := dev.ImageCheck()
	return health.Func(ic.Name(), func(ctx context.Context) error {
		st, err := dev.Status(ctx)
		if err != nil {
			return err
		}
		if st.Booted == st.Primary {
			return nil // not on trial
		}
		return ic.Check(ctx)
	})
}

// running lists what each MCU runs.
func (w *world) running() map[string]string {
	out := map[string]string{}
	for _, m := range w.mcus {
		_, v, ok := m.sim.Running()
		if !ok {
			v = "nothing"
		}
		out[m.name] = v
	}
	return out
}
