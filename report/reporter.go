package report

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"time"

	"github.com/switchback-ota/switchback/updater"
)

// Config configures a [Reporter]. Zero optional fields take the defaults
// named.
type Config struct {
	// URL is the endpoint batches are POSTed to. Required.
	URL string
	// Dir holds the outbox; on persistent local storage (e.g.
	// StateDir/report). Required.
	Dir string
	// Source names the device in each batch (not the rollout device id,
	// which never leaves the device).
	Source string
	// MaxRecords and MaxBytes bound the outbox: default 10,000 records
	// and 4 MiB.
	MaxRecords, MaxBytes int64
	// BatchSize is the most records per POST: default 100.
	BatchSize int
	// MinBackoff and MaxBackoff bound the wait after a failed POST, which
	// doubles per failure with ±50 % jitter: default 5 s and 1 h.
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient, when set, sends the batches. Otherwise a client is built
	// from CAFile, CertFile and KeyFile: pass the updater's transfer
	// configuration to present the same mTLS identity. The key pair is
	// re-read at each handshake, so a renewed certificate is used.
	HTTPClient                *http.Client
	CAFile, CertFile, KeyFile string
	// Now is the clock and Sleep waits (returning early with ctx's error);
	// nil: the real ones. Tests pass a virtual clock.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
}

// Reporter records events in a durable outbox and sends them. See the
// package documentation.
type Reporter struct {
	cfg    Config
	box    *Outbox
	client *http.Client
	log    *slog.Logger
	wake   chan struct{}
}

// New opens the outbox in cfg.Dir. Run sends.
func New(cfg Config) (*Reporter, error) {
	if cfg.URL == "" || cfg.Dir == "" {
		return nil, errors.New("report: URL and Dir are required")
	}
	setDefaults(&cfg)
	box, err := OpenOutbox(cfg.Dir, cfg.MaxRecords, cfg.MaxBytes)
	if err != nil {
		return nil, err
	}
	client := cfg.HTTPClient
	if client == nil {
		if client, err = tlsClient(cfg); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reporter{cfg: cfg, box: box, client: client, log: log, wake: make(chan struct{}, 1)}, nil
}

func setDefaults(c *Config) {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxRecords, 10_000)
	def(&c.MaxBytes, 4<<20)
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 5 * time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(time.Hour, c.MinBackoff)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func tlsClient(cfg Config) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("report: no certificate in %s", cfg.CAFile)
		}
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("report: CertFile and KeyFile go together")
	}
	if cfg.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			return &c, err
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Transport: tr, Timeout: time.Minute}, nil
}

// Observe records e in the outbox (Progress events are skipped). It may be
// used as updater.Config.Events or called from it; it returns once the
// record is on disk. A failure to store is logged.
func (r *Reporter) Observe(e updater.Event) {
	rec, ok := recordOf(e, r.cfg.Now())
	if !ok {
		return
	}
	if err := r.Add(rec); err != nil {
		r.log.Error("report: event not stored", "err", err)
	}
}

// Add stores a record (its Seq is assigned) and wakes the sender.
func (r *Reporter) Add(rec Record) error {
	if _, err := r.box.Add(rec); err != nil {
		return err
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// Outbox returns the reporter's outbox.
func (r *Reporter) Outbox() *Outbox { return r.box }

// Run sends the outbox until ctx ends, waiting for new records when it is
// empty and backing off after failures. It returns ctx's error.
func (r *Reporter) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		sent, err := r.SendOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			backoff = nextBackoff(backoff, r.cfg.MinBackoff, r.cfg.MaxBackoff)
			r.log.Warn("report: send failed", "err", err, "retry_in", backoff)
			if err := r.cfg.Sleep(ctx, backoff); err != nil {
				return err
			}
		case sent == 0:
			backoff = 0
			select {
			case <-r.wake:
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			backoff = 0
		}
	}
}

// nextBackoff doubles prev within [lo, hi], with ±50 % jitter.
func nextBackoff(prev, lo, hi time.Duration) time.Duration {
	d := min(max(2*prev, lo), hi)
	return d/2 + rand.N(d)
}

// SendOnce posts one batch of the oldest records and removes them once
// acknowledged. It returns how many records were acknowledged.
func (r *Reporter) SendOnce(ctx context.Context) (int, error) {
	recs, dropped, err := r.box.Peek(r.cfg.BatchSize)
	if err != nil || (len(recs) == 0 && dropped == 0) {
		return 0, err
	}
	body, err := json.Marshal(Batch{Source: r.cfg.Source, Dropped: dropped, Records: recs})
	if err != nil {
		return 0, fmt.Errorf("report: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("report: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := r.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("report: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return 0, fmt.Errorf("report: %s answered %s", r.cfg.URL, res.Status)
	}
	if err := r.box.Ack(recs, dropped); err != nil {
		return 0, err
	}
	return max(len(recs), 1), nil
}
