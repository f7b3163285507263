package updater

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/internal/download"
	"github.com/switchback-ota/switchback/verify"
)

// Staging: when several components follow one release line (Component.
// Release), the target they all install is fetched once into
// <StateDir>/staging/<sha256>, verified, and each component's transfer
// reads that local copy: fifty microcontrollers behind a gateway cost the
// uplink one image. Staged files that no trusted target names any more
// are removed at the next check.

const stagingDir = "staging"

// staged returns t reading from a verified local copy when c shares its
// release line with other components, fetching the copy first if needed;
// otherwise t unchanged. A staged target is transferred in full.
func (u *Updater) staged(ctx context.Context, c *Component, t verify.Target) (verify.Target, error) {
	pd := u.st.component(c.Name).Pending
	if !c.shared(&u.cfg) || isFileURL(t.URL) || (pd != nil && pd.Method != "" && pd.Method != methodFull) {
		return t, nil
	}
	p := filepath.Join(u.cfg.StateDir, stagingDir, t.SHA256())
	if err := checkStaged(p, t); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			u.log.Warn("staged target unusable; fetching it again", "target", t.Path, "err", err)
		}
		if err := u.stage(ctx, p, t); err != nil {
			return t, err
		}
	} else {
		u.log.Info("target read from the staging cache", "component", c.Name, "target", t.Path)
	}
	if pd != nil {
		pd.Method = methodFull
	}
	t.URL = (&url.URL{Scheme: "file", Path: p}).String()
	return t, nil
}

// checkStaged verifies the staged file p against t's signed length and
// sha256 (the copy was verified when written; this catches a disk that
// changed it since).
func checkStaged(p string, t verify.Target) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if n != t.Length || hex.EncodeToString(h.Sum(nil)) != t.SHA256() {
		return fmt.Errorf("staged %s: %d bytes, sha256 %x: %w", p, n, h.Sum(nil), verify.ErrVerification)
	}
	return nil
}

// stage fetches t from the servers into p, verifying every byte against
// the signed hashes before the file takes its name.
func (u *Updater) stage(ctx context.Context, p string, t verify.Target) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return storageError(err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".stage-*")
	if err != nil {
		return storageError(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	v, err := t.Verifier()
	if err != nil {
		return err
	}
	sink := &fileSink{f: f, t: t, v: v}
	if _, err := u.fetch(ctx, download.Request{URLs: u.targetURLs(t), Length: t.Length}, sink); err != nil {
		if errors.Is(err, download.ErrLength) {
			err = fmt.Errorf("%w: %w", verify.ErrVerification, err)
		}
		return fmt.Errorf("stage %s: %w", t.Path, err)
	}
	if err := sink.v.Verify(); err != nil {
		return fmt.Errorf("stage %s: %w", t.Path, err)
	}
	if err := f.Sync(); err != nil {
		return storageError(err)
	}
	if err := f.Close(); err != nil {
		return storageError(err)
	}
	return storageError(os.Rename(f.Name(), p))
}

// fileSink writes a fetched target to a file through its verifier.
type fileSink struct {
	f *os.File
	t verify.Target
	v *verify.Verifier
}

func (s *fileSink) Write(b []byte) (int, error) {
	if _, err := s.v.Write(b); err != nil {
		return 0, err
	}
	return s.f.Write(b)
}

// Restart starts the file and the hash over: the server sent the whole
// file again.
func (s *fileSink) Restart() error {
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	v, err := s.t.Verifier()
	if err != nil {
		return err
	}
	s.v = v
	return nil
}

// pruneStaging removes the staged files that no trusted target names.
func (u *Updater) pruneStaging() {
	dir := filepath.Join(u.cfg.StateDir, stagingDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	keep := map[string]bool{}
	for _, sha := range u.trusted {
		keep[sha] = true
	}
	for _, e := range ents {
		if !keep[e.Name()] {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
