package report

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchback-ota/switchback/updater"
)

// Metrics are Prometheus collectors fed by updater events, for a gateway
// application that already exports metrics: register them with its
// registry and call [Metrics.Observe] from updater.Config.Events (next to
// [Reporter.Observe] if both are used) and [Metrics.ObserveCheck] after
// each Check.
//
//	switchback_state{component,state}              1 for the current state
//	switchback_installed_version_info{component,version} 1
//	switchback_downloaded_bytes_total{component}   bytes written to slots
//	switchback_failures_total{component}           installs failed or rolled back
//	switchback_last_check_timestamp_seconds        end of the last check
//	switchback_last_check_success                  1 if it succeeded
type Metrics struct {
	state     *prometheus.GaugeVec
	installed *prometheus.GaugeVec
	bytes     *prometheus.CounterVec
	failures  *prometheus.CounterVec
	lastCheck prometheus.Gauge
	checkOK   prometheus.Gauge

	mu   sync.Mutex
	done map[string]int64 // last Progress.Done per component
}

// NewMetrics makes the collectors; register them with [Metrics.Register]
// or through [Metrics.Collectors].
func NewMetrics() *Metrics {
	return &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchback_state",
			Help: "1 for the component's current update state."}, []string{"component", "state"}),
		installed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchback_installed_version_info",
			Help: "1 for the component's installed (committed) version."}, []string{"component", "version"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchback_downloaded_bytes_total",
			Help: "Bytes written to slots."}, []string{"component"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchback_failures_total",
			Help: "Installs that failed or were rolled back."}, []string{"component"}),
		lastCheck: prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchback_last_check_timestamp_seconds",
			Help: "Unix time the last check ended."}),
		checkOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchback_last_check_success",
			Help: "1 if the last check succeeded (an update or none), 0 if it failed."}),
		done: map[string]int64{},
	}
}

// Collectors returns the collectors, to register one by one.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.state, m.installed, m.bytes, m.failures, m.lastCheck, m.checkOK}
}

// Register registers every collector with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range m.Collectors() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// SetInstalled sets the installed version of a component, e.g. from
// Updater.Status at start.
func (m *Metrics) SetInstalled(component, version string) {
	m.installed.DeletePartialMatch(prometheus.Labels{"component": component})
	m.installed.WithLabelValues(component, version).Set(1)
}

// Observe updates the metrics from one updater event.
func (m *Metrics) Observe(e updater.Event) {
	switch e := e.(type) {
	case updater.StateChanged:
		m.state.DeletePartialMatch(prometheus.Labels{"component": e.Component})
		m.state.WithLabelValues(e.Component, string(e.To)).Set(1)
		switch e.To {
		case updater.StateCommitted:
			m.SetInstalled(e.Component, e.Version)
		case updater.StateFailed, updater.StateRolledBack:
			m.failures.WithLabelValues(e.Component).Inc()
		case updater.StateDownloading:
			m.mu.Lock()
			m.done[e.Component] = 0
			m.mu.Unlock()
		}
	case updater.Progress:
		m.mu.Lock()
		delta := e.Done - m.done[e.Component]
		m.done[e.Component] = e.Done
		m.mu.Unlock()
		if delta > 0 {
			m.bytes.WithLabelValues(e.Component).Add(float64(delta))
		}
	}
}

// ObserveCheck records the end of a check and whether it failed (err nil
// or wrapping updater.ErrNoUpdate counts as success).
func (m *Metrics) ObserveCheck(at time.Time, err error) {
	m.lastCheck.Set(float64(at.UnixNano()) / 1e9)
	if err == nil || errorsIsNoUpdate(err) {
		m.checkOK.Set(1)
	} else {
		m.checkOK.Set(0)
	}
}

func errorsIsNoUpdate(err error) bool { return errors.Is(err, updater.ErrNoUpdate) }
