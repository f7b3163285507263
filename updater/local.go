package updater

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/verify"
)

// Local repositories: a MetadataURL or TargetsURL of the form file:///path/
// reads the TUF repository from a directory — a USB stick, a mounted
// update medium — with exactly the same verification as over HTTP.

func isFileURL(s string) bool { return strings.HasPrefix(s, "file://") }

func filePath(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("file URL %q names a host", s)
	}
	return u.Path, nil
}

// fetchFile is download.Client.Fetch for a file:// target.
func fetchFile(ctx context.Context, req download.Request, sink download.Sink) (download.Result, error) {
	res := download.Result{Delivered: req.Offset}
	p, err := filePath(req.URLs[0])
	if err != nil {
		return res, err
	}
	f, err := os.Open(p)
	if err != nil {
		return res, fmt.Errorf("local target: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(req.Offset, io.SeekStart); err != nil {
		return res, fmt.Errorf("local target: %w", err)
	}
	buf := make([]byte, 256<<10)
	// One byte more than the target may have: a longer file is refused.
	r := io.LimitReader(f, req.Length-req.Offset+1)
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			if res.Delivered+int64(n) > req.Length {
				return res, fmt.Errorf("local target %s is longer than the signed %d bytes: %w", p, req.Length, verify.ErrVerification)
			}
			if _, err := sink.Write(buf[:n]); err != nil {
				return res, err
			}
			res.Delivered += int64(n)
			res.Transferred += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return res, fmt.Errorf("local target: %w", rerr)
		}
	}
	if res.Delivered != req.Length {
		return res, fmt.Errorf("local target %s has %d bytes, signed length is %d: %w", p, res.Delivered, req.Length, verify.ErrVerification)
	}
	return res, nil
}

// InstallFile installs a release from a local file (an offline or USB
// update): the file must be, byte for byte, a target of the trusted TUF
// metadata (refreshed from the configured repository, which may itself be a
// file:// directory), and the same rules as for Check apply — hardware,
// version, minimum installed version, blocklist. It then installs and arms
// it like Install.
func (u *Updater) InstallFile(ctx context.Context, path string) error {
	unlock, err := u.lock()
	if err != nil {
		return err
	}
	defer unlock()
	// The path becomes a file:// URL: it must be absolute.
	path, err = filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("updater: install file: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("updater: install file: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return fmt.Errorf("updater: install file: %w", err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	ts, err := u.tuf.Refresh(ctx)
	if err != nil {
		return fmt.Errorf("updater: install file: %w", err)
	}
	u.remember(ts)
	u.rebuild(ctx)
	var match []verify.Target
	for _, t := range ts.Targets {
		if t.SHA256() == sum && t.Length == n {
			match = append(match, t)
		}
	}
	if len(match) == 0 {
		return fmt.Errorf("updater: install file %s (sha256 %s): not a target of the trusted metadata: %w", path, sum, verify.ErrVerification)
	}
	comp := match[0].Custom.Component
	c, ok := u.comp[comp]
	if !ok {
		return fmt.Errorf("updater: install file %s: component %q is not configured on this device: %w", path, comp, verify.ErrIncompatible)
	}
	cs := u.st.component(c.Name)
	t, err := verify.Select(match, u.policy(c, cs.Installed))
	if err != nil {
		return fmt.Errorf("updater: install file %s: %w", path, err)
	}
	t.URL = (&url.URL{Scheme: "file", Path: path}).String()
	up := Update{Component: comp, From: cs.Installed, To: t.Custom.Version, Target: t}
	if err := u.install(ctx, up); err != nil {
		return err
	}
	return u.restart(ctx, comp)
}
