package report

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchback-ota/switchback/updater"
)

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	m.SetInstalled("app", "1.0.0")
	for _, e := range []updater.Event{
		updater.StateChanged{Component: "app", From: updater.StateIdle, To: updater.StateDownloading, Version: "1.1.0"},
		updater.Progress{Component: "app", Done: 1000, Total: 3000},
		updater.Progress{Component: "app", Done: 3000, Total: 3000},
		updater.StateChanged{Component: "app", From: updater.StateConfirming, To: updater.StateCommitted, Version: "1.1.0"},
		updater.StateChanged{Component: "app", From: updater.StateIdle, To: updater.StateDownloading, Version: "1.2.0"},
		updater.Progress{Component: "app", Done: 500, Total: 3000},
		updater.StateChanged{Component: "app", From: updater.StateDownloading, To: updater.StateFailed, Version: "1.2.0"},
	} {
		m.Observe(e)
	}
	m.ObserveCheck(time.Unix(1800000000, 0), errors.New("offline"))
	want := `
# HELP switchback_downloaded_bytes_total Bytes written to slots.
# TYPE switchback_downloaded_bytes_total counter
switchback_downloaded_bytes_total{component="app"} 3500
# HELP switchback_failures_total Installs that failed or were rolled back.
# TYPE switchback_failures_total counter
switchback_failures_total{component="app"} 1
# HELP switchback_installed_version_info 1 for the component's installed (committed) version.
# TYPE switchback_installed_version_info gauge
switchback_installed_version_info{component="app",version="1.1.0"} 1
# HELP switchback_last_check_success 1 if the last check succeeded (an update or none), 0 if it failed.
# TYPE switchback_last_check_success gauge
switchback_last_check_success 0
# HELP switchback_last_check_timestamp_seconds Unix time the last check ended.
# TYPE switchback_last_check_timestamp_seconds gauge
switchback_last_check_timestamp_seconds 1.8e+09
# HELP switchback_state 1 for the component's current update state.
# TYPE switchback_state gauge
switchback_state{component="app",state="failed"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestRecordOf(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	tests := []struct {
		e    updater.Event
		want Record
		ok   bool
	}{
		{updater.StateChanged{Component: "app", From: "idle", To: "downloading", Version: "1.1.0", TargetPath: "app/x"},
			Record{Time: now, Type: "state", Component: "app", From: "idle", To: "downloading", Version: "1.1.0", Target: "app/x"}, true},
		{updater.HealthResult{Component: "app", Check: "http", Err: errors.New("503"), Duration: 12 * time.Millisecond},
			Record{Time: now, Type: "health", Component: "app", Check: "http", Error: "503", DurationMS: 12}, true},
		{updater.ErrorEvent{Component: "app", Op: "download", Err: errors.New("reset")},
			Record{Time: now, Type: "error", Component: "app", Op: "download", Error: "reset"}, true},
		{updater.Progress{Component: "app", Done: 1}, Record{}, false},
	}
	for _, tt := range tests {
		got, ok := recordOf(tt.e, now)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("recordOf(%#v) = %+v, %v; want %+v, %v", tt.e, got, ok, tt.want, tt.ok)
		}
	}
}
