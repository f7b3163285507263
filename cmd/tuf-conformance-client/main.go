// Command tuf-conformance-client is a TUF client for the official client
// conformance suite (theupdateframework/tuf-conformance), built on package
// verify's public API only, in verify's default configuration. It speaks
// the suite's CLIENT-CLI protocol:
//
//	tuf-conformance-client --metadata-dir DIR init TRUSTED_ROOT
//	tuf-conformance-client --metadata-dir DIR --metadata-url URL refresh
//	tuf-conformance-client --metadata-dir DIR --metadata-url URL \
//	    --target-name PATH [--target-name PATH...] \
//	    --target-base-url URL --target-dir DIR download
//
// The exit status is 0 on success, 1 on any failure, 2 on a usage error.
//
// The trusted root is DIR/root.json: init copies TRUSTED_ROOT there and
// every later run starts from it. Under libfaketime (FAKETIME set) the
// time is read from date(1), since the Go runtime does not see
// libfaketime's clock. See README.md for running the suite.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/switchback-ota/switchback/internal/durable"
	"github.com/switchback-ota/switchback/verify"
)

// multiFlag is a flag that may be repeated.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

type options struct {
	metadataDir, metadataURL string
	targetNames              multiFlag
	targetBaseURL, targetDir string
	verbose                  bool
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("tuf-conformance-client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.metadataDir, "metadata-dir", "", "trusted metadata directory")
	fs.StringVar(&o.metadataURL, "metadata-url", "", "repository metadata URL")
	fs.Var(&o.targetNames, "target-name", "target path to download (repeatable)")
	fs.StringVar(&o.targetBaseURL, "target-base-url", "", "repository targets URL")
	fs.StringVar(&o.targetDir, "target-dir", "", "directory for downloaded targets")
	fs.BoolVar(&o.verbose, "v", true, "log to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 || o.metadataDir == "" {
		fmt.Fprintln(stderr, "usage: tuf-conformance-client --metadata-dir DIR (init ROOT | refresh | download)")
		return 2
	}
	var err error
	switch rest[0] {
	case "init":
		if len(rest) != 2 {
			fmt.Fprintln(stderr, "usage: init TRUSTED_ROOT")
			return 2
		}
		err = initDir(o.metadataDir, rest[1])
	case "refresh":
		err = refresh(ctx, o, stderr)
	case "download":
		err = download(ctx, o, stderr)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n", rest[0])
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "tuf-conformance-client:", err)
		return 1
	}
	return 0
}

// initDir stores the trusted root as DIR/root.json, durably.
func initDir(dir, rootFile string) error {
	b, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(dir, "root.json"), b, 0o644)
}

// newClient makes a verify.Client in its default configuration, anchored
// at DIR/root.json.
func newClient(o options, stderr io.Writer) (*verify.Client, error) {
	if o.metadataURL == "" {
		return nil, errors.New("--metadata-url is required")
	}
	root, err := os.ReadFile(filepath.Join(o.metadataDir, "root.json"))
	if err != nil {
		return nil, fmt.Errorf("trusted root (run init first): %w", err)
	}
	now, err := clock()
	if err != nil {
		return nil, err
	}
	var log *slog.Logger
	if o.verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	return verify.New(verify.Config{
		Root:        root,
		MetadataURL: o.metadataURL,
		TargetsURL:  o.targetBaseURL,
		Dir:         o.metadataDir,
		Now:         now,
		Logger:      log,
	})
}

// clock returns the real clock, or under libfaketime the time date(1)
// reports now, advanced by the real time elapsed since.
func clock() (func() time.Time, error) {
	if os.Getenv("FAKETIME") == "" {
		return time.Now, nil
	}
	out, err := exec.Command("date", "-u", "+%s").Output()
	if err != nil {
		return nil, fmt.Errorf("date under FAKETIME: %w", err)
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("date under FAKETIME: %w", err)
	}
	fake, start := time.Unix(secs, 0), time.Now()
	return func() time.Time { return fake.Add(time.Since(start)) }, nil
}

func refresh(ctx context.Context, o options, stderr io.Writer) error {
	c, err := newClient(o, stderr)
	if err != nil {
		return err
	}
	_, err = c.Update(ctx)
	return err
}

// download refreshes the metadata, then fetches each target in order with
// one client, skipping a target already in the target directory with the
// trusted length and hashes.
func download(ctx context.Context, o options, stderr io.Writer) error {
	if len(o.targetNames) == 0 || o.targetDir == "" || o.targetBaseURL == "" {
		return errors.New("download needs --target-name, --target-dir and --target-base-url")
	}
	c, err := newClient(o, stderr)
	if err != nil {
		return err
	}
	t, err := c.Update(ctx)
	if err != nil {
		return err
	}
	for _, name := range o.targetNames {
		ti, err := t.Target(ctx, name)
		if err != nil {
			return err
		}
		if err := fetchTarget(ctx, ti, filepath.Join(o.targetDir, url.PathEscape(name))); err != nil {
			return fmt.Errorf("target %s: %w", name, err)
		}
	}
	return nil
}

// fetchTarget stores the target's verified bytes at dst, unless dst
// already holds them.
func fetchTarget(ctx context.Context, ti verify.TargetInfo, dst string) error {
	if have(ti, dst) {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ti.URL, nil)
	if err != nil {
		return err
	}
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", ti.URL, res.Status)
	}
	v, err := ti.Verifier()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	// The verifier fails as soon as the stream exceeds the trusted length.
	if _, err := io.Copy(io.MultiWriter(v, tmp), res.Body); err != nil {
		return err
	}
	if err := v.Verify(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// have reports whether path holds exactly the target's trusted bytes.
func have(ti verify.TargetInfo, path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	v, err := ti.Verifier()
	if err != nil {
		return false
	}
	if _, err := io.Copy(v, f); err != nil {
		return false
	}
	return v.Verify() == nil
}
