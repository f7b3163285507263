package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/switchback-ota/switchback/report"
	"github.com/switchback-ota/switchback/updater"
)

// reportConfig is the "report" section: where the updater's events are
// sent (package report), from a durable outbox in the state directory.
// TLS reuses the transfer's ca_file, cert_file and key_file: the device
// presents the same mTLS identity to the report endpoint as to the update
// server.
type reportConfig struct {
	// URL is the endpoint batches are POSTed to. Required.
	URL string `json:"url"`
	// Dir is the outbox; default state_dir/report.
	Dir string `json:"dir"`
	// Source names the device in each batch (the operator's name for it;
	// the rollout device id is never sent).
	Source string `json:"source"`
	// MaxRecords and MaxBytes bound the outbox (0: 10,000 and 4 MiB);
	// when full, the oldest records are dropped and counted.
	MaxRecords int64 `json:"max_records"`
	MaxBytes   int64 `json:"max_bytes"`
}

// check reports what is wrong with the section, in the file's words.
func (r *reportConfig) check() []error {
	var errs []error
	u, err := url.Parse(r.URL)
	switch {
	case r.URL == "":
		errs = append(errs, errors.New("report: url is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("report: url: %w", err))
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		errs = append(errs, fmt.Errorf("report: url %q is not an http(s) URL", r.URL))
	}
	if r.MaxRecords < 0 || r.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("report: max_records %d and max_bytes %d must not be negative", r.MaxRecords, r.MaxBytes))
	}
	return errs
}

// reporterConfig is the report.Config of a configuration file, nil when it
// has no "report" section.
func reporterConfig(c *fileConfig) *report.Config {
	r := c.Report
	if r == nil {
		return nil
	}
	dir := r.Dir
	if dir == "" {
		dir = filepath.Join(c.StateDir, "report")
	}
	return &report.Config{
		URL: r.URL, Dir: dir, Source: r.Source, MaxRecords: r.MaxRecords, MaxBytes: r.MaxBytes,
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
	}
}

// flushTimeout bounds how long a one-shot command spends sending its
// events when it ends; what is not sent stays in the outbox for the next
// command or `switchback run`.
const flushTimeout = 5 * time.Second

// close sends what the reporter holds, within flushTimeout, and closes the
// updater.
func (s *session) close(ctx context.Context) {
	if s.rep != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		for {
			n, err := s.rep.SendOnce(ctx)
			if err != nil || n == 0 {
				break
			}
		}
		cancel()
	}
	s.u.Close()
}

var errRestartNotHere = errors.New("switchback run restarts nothing itself")

func cmdRun(ctx context.Context, c *cli, args []string) error {
	if err := c.parse(c.flags("run"), args); err != nil {
		return err
	}
	d, err := c.load()
	if err != nil {
		return err
	}
	// The CLI restarts nothing itself: Run returns as soon as a restart
	// is needed, and the service manager or the operator restarts.
	d.ucfg.Restart = func(context.Context, string) error { return errRestartNotHere }
	s, err := c.newSession(d, lockWait)
	if err != nil {
		return err
	}
	defer s.close(ctx)
	var wg sync.WaitGroup
	sendCtx, stopSending := context.WithCancel(ctx)
	if s.rep != nil {
		wg.Go(func() { _ = s.rep.Run(sendCtx) })
	}
	err = s.u.Run(ctx)
	stopSending()
	wg.Wait()
	switch {
	case errors.Is(err, updater.ErrRestartRequired):
		fmt.Fprintln(c.stdout, "restart required: a new version is armed, or a failed one was rolled back")
		return nil
	case ctx.Err() != nil:
		return nil // stopped (SIGTERM, SIGINT)
	}
	return err
}
