package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/repository"
	"github.com/switchback-ota/switchback/verify"
)

// localRepo is a repository directory read through file:// URLs, with the
// same verification as over HTTP.
type localRepo struct{ dir string }

// url returns the file:// URL of the repository's directory name.
func (l localRepo) url(name string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(l.dir, name))
	if err != nil {
		return "", err
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs) + "/"}).String(), nil
}

// open opens a target by its file:// URL.
func (l localRepo) open(target string) (*os.File, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	return os.Open(filepath.FromSlash(u.Path))
}

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, g := newFlags("verify", "", stderr)
	rootFile := fs.String("root", "", "trusted root.json `file` a device embeds (required)")
	metaURL := fs.String("url", "", "metadata base `URL` (default: read -repo directly); targets are at ../targets/ unless -targets-url")
	targetsURL := fs.String("targets-url", "", "targets base `URL`")
	hardware := fs.String("hardware", "", "hardware id of the device (required)")
	var components list
	fs.Var(&components, "component", "components to report (default: every one published)")
	installed := roleValues{}
	fs.Var(installed, "installed", "installed version, `component=version` (repeatable)")
	state := fs.String("state", "", "`dir`ectory for trusted metadata between runs, as on a device (default: a fresh temporary one)")
	noFetch := fs.Bool("no-fetch", false, "do not download and verify the chosen targets")
	if code := parseFlags(fs, args, exactly(0)); code >= 0 {
		return code
	}
	if *rootFile == "" || *hardware == "" {
		return fail(stderr, "verify", fmt.Errorf("%w: -root and -hardware are required", errUsage))
	}
	root, err := os.ReadFile(*rootFile)
	if err != nil {
		return fail(stderr, "verify", err)
	}
	dir := *state
	if dir == "" {
		tmp, err := os.MkdirTemp("", "switchback-verify-")
		if err != nil {
			return fail(stderr, "verify", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	hc := &http.Client{Timeout: 5 * time.Minute}
	cfg := verify.Config{Root: root, Dir: dir}
	local, err := setVerifySources(&cfg, g.repo, *metaURL, *targetsURL, hc)
	if err != nil {
		return fail(stderr, "verify", err)
	}
	client, err := verify.New(cfg)
	if err != nil {
		return fail(stderr, "verify", err)
	}
	ts, err := client.Refresh(ctx)
	if err != nil {
		return fail(stderr, "verify", fmt.Errorf("TUF refresh: %w", err))
	}
	printTrusted(stdout, ts)
	if len(components) == 0 {
		components = publishedComponents(ts)
	}
	code := exitOK
	for _, comp := range components {
		p := verify.Policy{Component: comp, Hardware: *hardware, Installed: installed[comp]}
		if !reportComponent(ctx, stdout, hc, local, ts, p, !*noFetch) {
			code = exitFail
		}
	}
	return code
}

// setVerifySources points cfg at the repository: read directly from the
// directory repoDir when metaURL is empty (it returns that localRepo
// then), over HTTP otherwise.
func setVerifySources(cfg *verify.Config, repoDir, metaURL, targetsURL string, hc *http.Client) (*localRepo, error) {
	if metaURL == "" {
		local := &localRepo{repoDir}
		var err error
		if cfg.MetadataURL, err = local.url(repository.MetadataPath); err == nil {
			cfg.TargetsURL, err = local.url(repository.TargetsPath)
		}
		if err != nil {
			return nil, err
		}
		cfg.Fetcher = verify.NewFileFetcher
		return local, nil
	}
	cfg.MetadataURL = strings.TrimSuffix(metaURL, "/") + "/"
	cfg.TargetsURL = targetsURL
	if cfg.TargetsURL == "" {
		cfg.TargetsURL = strings.TrimSuffix(cfg.MetadataURL, repository.MetadataPath+"/") + repository.TargetsPath + "/"
	}
	cfg.Fetcher = func(ctx context.Context) verify.Fetcher { return verify.NewHTTPFetcher(ctx, hc) }
	return nil, nil
}

// printTrusted prints the versions of the trusted metadata and the
// targets it lists and rejects.
func printTrusted(stdout io.Writer, ts *verify.Targets) {
	fmt.Fprintf(stdout, "trusted: root v%d, timestamp v%d, snapshot v%d, targets v%d; valid until %s\n",
		ts.RootVersion, ts.TimestampVersion, ts.SnapshotVersion, ts.TargetsVersion, ts.Expires.Format(time.RFC3339))
	fmt.Fprintf(stdout, "targets: %d usable, %d rejected\n", len(ts.Targets), len(ts.Rejected))
	for _, r := range ts.Rejected {
		fmt.Fprintf(stdout, "  rejected %s: %v\n", r.Path, r.Err)
	}
}

// publishedComponents returns the components of the usable targets, in
// the order they first appear.
func publishedComponents(ts *verify.Targets) []string {
	var components []string
	for _, t := range ts.Targets {
		if !slices.Contains(components, t.Custom.Component) {
			components = append(components, t.Custom.Component)
		}
	}
	return components
}

// reportComponent prints the update a device with policy p would choose
// and, when fetch is set, downloads and verifies it. It returns false
// when the choice or the verification failed; no update is not a failure.
func reportComponent(ctx context.Context, stdout io.Writer, hc *http.Client, local *localRepo, ts *verify.Targets, p verify.Policy, fetch bool) bool {
	comp, hardware := p.Component, p.Hardware
	from := p.Installed
	if from == "" {
		from = "nothing"
	}
	t, err := verify.Select(ts.Targets, p)
	if errors.Is(err, verify.ErrNoUpdate) || errors.Is(err, verify.ErrIncompatible) {
		fmt.Fprintf(stdout, "%s on %s (installed %s): no update: %v\n", comp, hardware, from, err)
		return true
	}
	if err != nil {
		fmt.Fprintf(stdout, "%s on %s: %v\n", comp, hardware, err)
		return false
	}
	fmt.Fprintf(stdout, "%s on %s (installed %s): install %s version %s (%d bytes)\n", comp, hardware, from, t.Path, t.Custom.Version, t.Length)
	if !fetch {
		return true
	}
	if err := fetchAndVerify(ctx, hc, local, t); err != nil {
		fmt.Fprintf(stdout, "  FAILED: %v\n", err)
		return false
	}
	where := t.URL
	if u, err := url.Parse(t.URL); err == nil && local != nil {
		where = filepath.FromSlash(u.Path)
	}
	fmt.Fprintf(stdout, "  verified %s\n", where)
	return true
}

// fetchAndVerify streams a target as a device would and checks its length
// and hashes, and for a compressed target the decompressed digest too.
func fetchAndVerify(ctx context.Context, hc *http.Client, local *localRepo, t verify.Target) error {
	var body io.ReadCloser
	if local != nil {
		f, err := local.open(t.URL)
		if err != nil {
			return err
		}
		body = f
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
		if err != nil {
			return err
		}
		res, err := hc.Do(req)
		if err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK {
			res.Body.Close()
			return fmt.Errorf("GET %s: %s", t.URL, res.Status)
		}
		body = res.Body
	}
	defer body.Close()
	v, err := t.Verifier()
	if err != nil {
		return err
	}
	src := io.TeeReader(io.LimitReader(body, t.Length+1), v)
	if t.Custom.Compression == verify.CompressionZstd {
		dv, err := verify.NewDigestVerifier(*t.Custom.Uncompressed)
		if err != nil {
			return err
		}
		dec, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return err
		}
		defer dec.Close()
		if _, err := io.Copy(dv, io.LimitReader(dec, t.Custom.Uncompressed.Length+1)); err != nil {
			return fmt.Errorf("decompress: %w", err)
		}
		// Read what the decoder left, so the target hash covers every byte.
		if _, err := io.Copy(io.Discard, src); err != nil {
			return err
		}
		if err := dv.Verify(); err != nil {
			return fmt.Errorf("uncompressed image: %w", err)
		}
	} else if _, err := io.Copy(io.Discard, src); err != nil && !errors.Is(err, verify.ErrVerification) {
		return err
	}
	return v.Verify()
}
