package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchback-ota/switchback/internal/testkit/tuftest"
	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/report"
)

// eventSink is a report endpoint behind mutual TLS: it keeps the batches it
// acknowledges and the client certificate's name; while down it answers
// 503.
type eventSink struct {
	srv     *httptest.Server
	down    atomic.Bool
	mu      sync.Mutex
	batches []report.Batch
	clients []string
}

func newEventSink(t *testing.T, ca *relay.CA) *eventSink {
	t.Helper()
	s := &eventSink{}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var b report.Batch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.batches = append(s.batches, b)
		s.clients = append(s.clients, r.TLS.PeerCertificates[0].Subject.CommonName)
		s.mu.Unlock()
	}))
	cert, err := ca.ServerCertificate([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// records returns the records received, and every batch's source and
// client certificate name.
func (s *eventSink) records() (recs []report.Record, sources, clients []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		recs = append(recs, b.Records...)
		sources = append(sources, b.Source)
	}
	return recs, sources, append([]string(nil), s.clients...)
}

// reportingDevice writes the configuration of a device (app 1.0.0, 1.1.0
// published) whose events go to sink, with the transfer's mTLS identity.
func reportingDevice(t *testing.T, sink *eventSink, ca *relay.CA) (config, outbox string) {
	t.Helper()
	repo := tuftest.New(t)
	repo.AddTarget("app/1.0.0", []byte("#!/bin/sh\nexit 0\n"), release("1.0.0", "gw"))
	repo.AddTarget("app/1.1.0", []byte("#!/bin/sh\necho 1.1.0\n"), release("1.1.0", "gw"))
	repo.Publish()
	certPEM, keyPEM, err := ca.IssueClientCert("gw-0042", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "device.pem"), filepath.Join(dir, "device.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	outbox = filepath.Join(dir, "outbox")
	config = fileDevice(t, repo, func(cfg, _ map[string]any) {
		cfg["ca_file"], cfg["cert_file"], cfg["key_file"] = ca.CertFile(), certFile, keyFile
		cfg["report"] = map[string]any{"url": sink.srv.URL + "/events", "source": "gw-0042", "dir": outbox}
	})
	return config, outbox
}

func outboxLen(t *testing.T, dir string) int {
	t.Helper()
	box, err := report.OpenOutbox(dir, 10_000, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	n, _, _ := box.Len()
	return n
}

// TestRunReports: `switchback run` installs the update and sends its
// events to the configured endpoint with the transfer's client
// certificate; it stops by itself once the new version is armed.
func TestRunReports(t *testing.T) {
	ca, err := relay.LoadCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sink := newEventSink(t, ca)
	cfg, outbox := reportingDevice(t, sink, ca)
	out, code := switchback(t, cfg, "run")
	if code != 0 || !strings.Contains(out, "restart required") {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	recs, sources, clients := sink.records()
	if !hasState(recs, "1.1.0", "armed") {
		t.Errorf("no state record arming 1.1.0 among %+v", recs)
	}
	for i := range sources {
		if sources[i] != "gw-0042" || clients[i] != "gw-0042" {
			t.Errorf("batch %d: source %q, client certificate %q; want gw-0042 for both", i, sources[i], clients[i])
		}
	}
	if n := outboxLen(t, outbox); n != 0 {
		t.Errorf("%d records left in the outbox after delivery", n)
	}
}

// TestReportEndpointDown: while the endpoint is down the events wait in the
// outbox and the update goes on; the next command sends them.
func TestReportEndpointDown(t *testing.T) {
	ca, err := relay.LoadCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sink := newEventSink(t, ca)
	sink.down.Store(true)
	cfg, outbox := reportingDevice(t, sink, ca)
	if out, code := switchback(t, cfg, "install"); code != 0 || !strings.Contains(out, "armed") {
		t.Fatalf("install: exit %d\n%s", code, out)
	}
	held := outboxLen(t, outbox)
	if recs, _, _ := sink.records(); held == 0 || len(recs) != 0 {
		t.Fatalf("endpoint down: %d records in the outbox, %d acknowledged; want some, 0", held, len(recs))
	}
	sink.down.Store(false)
	// status only reads (it runs beside the StateDir's writer); the next
	// command that opens the updater sends what waits.
	if out, code := switchback(t, cfg, "check"); code != 0 {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	recs, _, _ := sink.records()
	if len(recs) != held || !hasState(recs, "1.1.0", "armed") || outboxLen(t, outbox) != 0 {
		t.Errorf("after the endpoint came back: %d records received (want %d, arming 1.1.0), %d left", len(recs), held, outboxLen(t, outbox))
	}
}

func hasState(recs []report.Record, version, to string) bool {
	for _, r := range recs {
		if r.Type == "state" && r.Version == version && strings.Contains(r.To, to) {
			return true
		}
	}
	return false
}

// TestReportConfig: the "report" section's checks and defaults; TLS comes
// from the transfer's settings.
func TestReportConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		report string
		ok     bool
	}{
		{`{"url": "https://fleet.example.com/events"}`, true},
		{`{}`, false},
		{`{"url": "fleet.example.com"}`, false},
		{`{"url": "https://x/e", "max_records": -1}`, false},
		{`{"url": "https://x/e", "outbox": "/x"}`, false},
	} {
		c, err := parseConfig([]byte(`{"root": "r", "state_dir": "` + dir + `", "ca_file": "/ca.pem",
			"cert_file": "/d.pem", "key_file": "/d.key", "report": ` + tc.report + `}`))
		if (err == nil) != tc.ok {
			t.Errorf("%s: got %v, want ok=%v", tc.report, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		rc := reporterConfig(c)
		if rc.Dir != filepath.Join(dir, "report") || rc.CAFile != "/ca.pem" || rc.CertFile != "/d.pem" || rc.KeyFile != "/d.key" {
			t.Errorf("got dir %q, TLS %q %q %q", rc.Dir, rc.CAFile, rc.CertFile, rc.KeyFile)
		}
	}
	if c, err := parseConfig([]byte(`{"root": "r"}`)); err != nil || reporterConfig(c) != nil {
		t.Errorf("no report section: got %v, %v; want no reporter", err, reporterConfig(c))
	}
}
