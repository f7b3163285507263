package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchback-ota/switchback/health"
	"github.com/switchback-ota/switchback/relay"
	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/slots/smp"
	"github.com/switchback-ota/switchback/slots/smp/smptest"
	"github.com/switchback-ota/switchback/updater"
	"github.com/switchback-ota/switchback/verify"
)

const (
	gatewayHW = "gateway-x86"
	edgeHW    = "edge-arm"
)

// world is everything the example runs: the cloud, the gateway and the
// devices behind it.
type world struct {
	tr   *transcript
	work string

	repo      *repository.Repo
	root      []byte
	cloud     *httptest.Server
	uplinkCut atomic.Bool  // the cloud answers nothing
	cloudHits atomic.Int64 // requests that reached the cloud

	relay      *relay.Relay
	relayURL   string
	relaySrv   *http.Server
	caFile     string
	tamper     atomic.Bool // the relay's output is altered on the way
	mu         sync.Mutex
	relayGets  map[string]int // target requests served by the relay, by path
	gatewayApp *updater.Updater
	edges      []*updater.Updater
	mcuUp      *updater.Updater
	mcus       []*mcu
}

// mcu is one simulated microcontroller and the gateway's handle on it.
type mcu struct {
	name, kind string
	sim        *smptest.MCU
	dev        *smp.Device
}

func newWorld(ctx context.Context, tr *transcript, work string) (*world, error) {
	w := &world{tr: tr, work: work, relayGets: map[string]int{}}
	for _, setup := range []func(context.Context) error{w.startCloud, w.startRelay, w.startGateway, w.startEdges, w.startMCUs} {
		if err := setup(ctx); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

func (w *world) close() {
	for _, u := range append([]*updater.Updater{w.gatewayApp, w.mcuUp}, w.edges...) {
		if u != nil {
			u.Close()
		}
	}
	for _, m := range w.mcus {
		m.dev.Close()
		m.sim.Close()
	}
	if w.relaySrv != nil {
		w.relaySrv.Close()
	}
	if w.relay != nil {
		w.relay.Close()
	}
	if w.cloud != nil {
		w.cloud.Close()
	}
}

// startCloud makes the signed repository and serves it on 127.0.0.1.
func (w *world) startCloud(ctx context.Context) error {
	repo, err := repository.Init(ctx, repository.Config{Dir: filepath.Join(w.work, "cloud")},
		repository.InitOptions{KeysDir: filepath.Join(w.work, "keys")})
	if err != nil {
		return fmt.Errorf("init repository: %w", err)
	}
	w.repo = repo
	if w.root, err = os.ReadFile(filepath.Join(repo.MetadataDir(), "1.root.json")); err != nil {
		return err
	}
	files := http.FileServer(http.Dir(repo.Dir()))
	w.cloud = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.uplinkCut.Load() {
			// The gateway's uplink is down: nothing gets through.
			hj, ok := rw.(http.Hijacker)
			if conn, _, err := hj.Hijack(); ok && err == nil {
				conn.Close()
			}
			return
		}
		w.cloudHits.Add(1)
		files.ServeHTTP(rw, r)
	}))
	w.tr.say("cloud: signed TUF repository served on %s", w.cloud.URL)
	return nil
}

// publish adds a target to the cloud repository and publishes it.
func (w *world) publish(ctx context.Context, path string, data []byte, c verify.Custom) error {
	if _, err := w.repo.AddTarget(ctx, path, bytes.NewReader(data), c, repository.AddOptions{}); err != nil {
		return err
	}
	return w.repo.Publish(ctx)
}

// startRelay starts the gateway's relay: HTTPS on 127.0.0.1 with the
// gateway CA, prefetching for the edge devices and the MCUs.
func (w *world) startRelay(ctx context.Context) error {
	dir := filepath.Join(w.work, "gateway", "relay")
	r, err := relay.New(relay.Config{Dir: dir, Root: w.root,
		MetadataURL: w.cloud.URL + "/metadata/", TargetsURL: w.cloud.URL + "/targets/",
		Hardware: []string{edgeHW, "sensor-a", "sensor-b"}, RetryMax: 1, StallTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	w.relay = r
	ca, err := relay.LoadCA(filepath.Join(dir, "tls"), nil)
	if err != nil {
		return err
	}
	w.caFile = ca.CertFile()
	tc, err := ca.ServerTLS([]string{"127.0.0.1"}, false)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	w.relaySrv = &http.Server{Handler: w.relayHandler(r), TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second}
	go w.relaySrv.ServeTLS(ln, "", "")
	w.relayURL = "https://" + ln.Addr().String()
	w.tr.say("gateway: relay on %s (TLS, gateway CA %s pinned by the devices)", w.relayURL, filepath.Base(w.caFile))
	return nil
}

// relayHandler counts the target requests the relay answers, and alters
// its output while w.tamper is set (a compromised gateway).
func (w *world) relayHandler(r http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if strings.HasPrefix(req.URL.Path, relay.TargetsPrefix) {
			w.mu.Lock()
			w.relayGets[req.URL.Path]++
			w.mu.Unlock()
			if w.tamper.Load() {
				rec := httptest.NewRecorder()
				r.ServeHTTP(rec, req)
				body := rec.Body.Bytes()
				if len(body) > 0 {
					body[len(body)/2] ^= 0xff
				}
				for k, v := range rec.Header() {
					rw.Header()[k] = v
				}
				rw.WriteHeader(rec.Code)
				rw.Write(body)
				return
			}
		}
		r.ServeHTTP(rw, req)
	})
}

// refreshRelay makes the relay take the cloud's latest release now (Run
// does it on a timer).
func (w *world) refreshRelay(ctx context.Context) error {
	if err := w.relay.Refresh(ctx); err != nil {
		return err
	}
	return w.relay.Prefetch(ctx)
}

// fileUpdater is an updater of one application binary (a file slot),
// with the given servers.
func (w *world) fileUpdater(name, hw, metaURL, targetsURL, caFile string) (*updater.Updater, error) {
	dir := filepath.Join(w.work, name)
	bin := filepath.Join(dir, "bin", "app")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(bin, []byte("app 1.0.0\n"), 0o644); err != nil {
		return nil, err
	}
	file, err := slots.NewFile(bin)
	if err != nil {
		return nil, err
	}
	return updater.New(updater.Config{
		Hardware: hw, StateDir: filepath.Join(dir, "state"), TrustedRoot: w.root,
		MetadataURL: metaURL, TargetsURL: targetsURL, CAFile: caFile,
		Components:   []updater.Component{{Name: "app", Slots: file.Slots(), Boot: file, FactoryVersion: "1.0.0"}},
		HealthChecks: []health.HealthCheck{health.Func("app answers", func(context.Context) error { return nil })},
		Restart:      func(context.Context, string) error { return nil },
		StallTimeout: 2 * time.Second, MetadataTimeout: 10 * time.Second,
	})
}

func (w *world) startGateway(context.Context) error {
	u, err := w.fileUpdater("gateway", gatewayHW, w.cloud.URL+"/metadata/", w.cloud.URL+"/targets/", "")
	w.gatewayApp = u
	return err
}

// startEdges starts two Linux edge devices whose only mirror is the relay.
func (w *world) startEdges(context.Context) error {
	for _, name := range []string{"edge-1", "edge-2"} {
		u, err := w.fileUpdater(name, edgeHW, w.relayURL+relay.MetadataPrefix, w.relayURL+relay.TargetsPrefix, w.caFile)
		if err != nil {
			return err
		}
		w.edges = append(w.edges, u)
	}
	w.tr.say("edge-1, edge-2: updaters with the relay as their only mirror")
	return nil
}
