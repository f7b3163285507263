package updater

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

// localChunk is the most fetchFile reads from a local file at once.
const localChunk = 256 << 10

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
	// The file is read into the sink's own buffers when it has them
	// (download.BufferSink, as the pipeline does): no copy between.
	var buf []byte
	if _, own := sink.(download.BufferSink); !own {
		buf = make([]byte, localChunk)
	}
	// One byte more than the target may have: a longer file is refused.
	r := io.LimitReader(f, req.Length-req.Offset+1)
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		dst := download.BufferFor(sink, buf, localChunk)
		n, rerr := r.Read(dst)
		if n > 0 {
			if res.Delivered+int64(n) > req.Length {
				return res, fmt.Errorf("local target %s is longer than the signed %d bytes: %w", p, req.Length, verify.ErrVerification)
			}
			if _, err := download.Deliver(sink, dst[:n]); err != nil {
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
//
// The file is read once: its target is found without reading it (by its
// length and, for a file keeping its published consistent-snapshot name,
// the hash in that name) or from its first block, and it is verified while
// it streams into the slot, as a download is. Only when several targets
// share its length and first block is it hashed first. A file that is no
// target is refused after one pass at most, with an error wrapping
// verify.ErrVerification; it is not counted against any release.
func (u *Updater) InstallFile(ctx context.Context, path string) error {
	var comp string
	err := u.locked(func() error {
		var err error
		comp, err = u.installFile(ctx, path)
		return err
	})
	if err != nil {
		return err
	}
	return u.restart(ctx, comp)
}

// installFile is InstallFile under the lock, up to the armed trial; it
// returns the component installed.
func (u *Updater) installFile(ctx context.Context, path string) (string, error) {
	// The path becomes a file:// URL: it must be absolute.
	path, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("updater: install file: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("updater: install file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("updater: install file %s: not a regular file", path)
	}
	ts, err := u.tuf.Refresh(ctx)
	if err != nil {
		return "", fmt.Errorf("updater: install file: %w", err)
	}
	u.remember(ts)
	u.rebuild(ctx)
	match, err := u.matchLocal(ctx, path, fi.Size(), ts.Targets)
	if err != nil {
		return "", fmt.Errorf("updater: install file %s: %w", path, err)
	}
	comp := match[0].Custom.Component
	c, ok := u.comp[comp]
	if !ok {
		return "", fmt.Errorf("updater: install file %s: component %q is not configured on this device: %w", path, comp, verify.ErrIncompatible)
	}
	cs := u.st.component(c.Name)
	t, err := verify.Select(match, u.policy(c, cs.Installed))
	if err != nil {
		return "", fmt.Errorf("updater: install file %s: %w", path, err)
	}
	t.URL = (&url.URL{Scheme: "file", Path: path}).String()
	up := Update{Component: comp, From: cs.Installed, To: t.Custom.Version, Target: t}
	forgive := u.st.forgiver(t.SHA256())
	if err := u.install(ctx, up); err != nil {
		if errors.Is(err, verify.ErrVerification) {
			// A damaged copy on a stick is a bad transfer, not a bad
			// release, and says nothing about the network: no transit
			// backoff comes of it.
			forgive()
		}
		return "", err
	}
	return comp, nil
}

// forgiver returns a func that puts the transit backoff of sha back as it
// is now. (A verification failure never blocklists a release.)
func (s *store) forgiver(sha string) func() {
	backoff, backingOff := s.backoff(sha)
	return func() {
		if b, ok := s.backoff(sha); ok == backingOff && b == backoff {
			return
		}
		if backingOff {
			s.setBackoff(sha, backoff)
		} else {
			s.clearBackoff(sha)
		}
		_ = s.save() // at worst the backoff stays
	}
}

// firstBlock is how much of a local file is read to tell apart targets of
// the same length.
const firstBlock = 64 << 10

// matchLocal returns the targets the file at path (size bytes) can be, all
// with the same content hash; the install verifies that it is. It narrows
// by length, then by the hash in a consistent-snapshot name
// ("<sha256>.<name>"), then by the first block compared with each
// candidate's, and only then hashes the file.
func (u *Updater) matchLocal(ctx context.Context, path string, size int64, targets []verify.Target) ([]verify.Target, error) {
	var cands []verify.Target
	for _, t := range targets {
		if t.Length == size && t.SHA256() != "" {
			cands = append(cands, t)
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("no target of the trusted metadata has its length (%d bytes): %w", size, verify.ErrVerification)
	}
	if named := bySHA(cands, nameHash(filepath.Base(path))); len(named) > 0 {
		return named, nil
	}
	if distinct(cands) == 1 {
		return cands, nil
	}
	head, err := readHead(path, min(size, firstBlock))
	if err != nil {
		return nil, err
	}
	var same []verify.Target
	for _, t := range cands {
		if th, err := u.targetHead(ctx, t, int64(len(head))); err == nil && bytes.Equal(th, head) {
			same = append(same, t)
		}
	}
	if len(same) > 0 && distinct(same) == 1 {
		return same, nil
	}
	// Same first block (or the targets' could not be read): one pass.
	sum, err := hashFile(ctx, path)
	if err != nil {
		return nil, err
	}
	if match := bySHA(cands, sum); len(match) > 0 {
		return match, nil
	}
	return nil, fmt.Errorf("sha256 %s: not a target of the trusted metadata: %w", sum, verify.ErrVerification)
}

// nameHash returns the hash prefix of a consistent-snapshot target file
// name, or "".
func nameHash(name string) string {
	h, _, ok := strings.Cut(name, ".")
	if !ok || len(h) != 2*sha256.Size {
		return ""
	}
	if _, err := hex.DecodeString(h); err != nil {
		return ""
	}
	return strings.ToLower(h)
}

// bySHA returns the targets whose sha256 is sum.
func bySHA(ts []verify.Target, sum string) []verify.Target {
	var out []verify.Target
	for _, t := range ts {
		if sum != "" && t.SHA256() == sum {
			out = append(out, t)
		}
	}
	return out
}

// distinct counts the different contents (sha256) among ts.
func distinct(ts []verify.Target) int {
	seen := map[string]bool{}
	for _, t := range ts {
		seen[t.SHA256()] = true
	}
	return len(seen)
}

func readHead(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

// targetHead reads the first n bytes of target t from the repository.
func (u *Updater) targetHead(ctx context.Context, t verify.Target, n int64) ([]byte, error) {
	rc, err := u.rangeFunc(t.URL)(ctx, 0, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, err
	}
	return b, nil
}

// hashFile returns the hex sha256 of the file at path.
func hashFile(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, rerr := f.Read(buf)
		h.Write(buf[:n])
		if rerr == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if rerr != nil {
			return "", rerr
		}
	}
}
