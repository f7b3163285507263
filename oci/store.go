package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Store is an OCI image layout (oci-layout, blobs/sha256/...) holding the
// blobs of the images in a [Component]'s slots. A blob is written to
// "<hex>.part", verified against its digest, fsynced and renamed into
// place: a blob under its final name has been verified. A Store is not
// safe for concurrent use.
type Store struct {
	dir string
}

// OpenStore opens (creating it if needed) the image layout at dir.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("oci: store: %w", err)
	}
	layout := filepath.Join(dir, "oci-layout")
	if _, err := os.Stat(layout); errors.Is(err, os.ErrNotExist) {
		if err := writeDurable(layout, []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return nil, err
		}
	}
	s := &Store{dir: dir}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); errors.Is(err, os.ErrNotExist) {
		if err := s.writeIndex(nil); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) blobDir() string { return filepath.Join(s.dir, "blobs", "sha256") }

// Path is the file of a verified blob.
func (s *Store) Path(digest string) string {
	h, _ := digestHex(digest)
	return filepath.Join(s.blobDir(), h)
}

// Has reports whether the verified blob d is present (by name and size:
// blobs are verified before they get their name).
func (s *Store) Has(d Descriptor) bool {
	fi, err := os.Stat(s.Path(d.Digest))
	return err == nil && fi.Size() == d.Size
}

// Fetch makes the blob d present, fetching from reg what is missing, and
// returns how many bytes crossed the network (0 when it was present).
// An interrupted transfer resumes from its partial file: within this call
// under the download client's retry rules, or in a later call.
func (s *Store) Fetch(ctx context.Context, reg *Registry, d Descriptor) (int64, error) {
	hexd, err := digestHex(d.Digest)
	if err != nil {
		return 0, err
	}
	if s.Has(d) {
		return 0, nil
	}
	part := filepath.Join(s.blobDir(), hexd+".part")
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, fmt.Errorf("oci: store: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, io.LimitReader(f, d.Size+1))
	if err != nil {
		return 0, fmt.Errorf("oci: store: reading partial %s: %w", d.Digest, err)
	}
	var moved int64
	if have < d.Size { // complete, or longer: commitPart tells
		if moved, err = reg.fetchBlob(ctx, d, f, h, have); err != nil {
			return moved, err
		}
	}
	return moved, s.commitPart(f, part, d, h)
}

// commitPart checks a complete partial file against d, then makes it a
// verified blob, durably. A mismatch removes the partial file.
func (s *Store) commitPart(f *os.File, part string, d Descriptor, h hash.Hash) error {
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if got != d.Digest || fi.Size() != d.Size {
		os.Remove(part)
		return fmt.Errorf("%w: blob %s (%d bytes): the registry served %s (%d bytes)", ErrDigestMismatch, d.Digest, d.Size, got, fi.Size())
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("oci: storing blob %s: %w", d.Digest, err)
	}
	if err := os.Rename(part, s.Path(d.Digest)); err != nil {
		return fmt.Errorf("oci: storing blob %s: %w", d.Digest, err)
	}
	return syncDir(s.blobDir())
}

// GC removes every blob whose digest keep does not hold, and every partial
// file unless keepPartial (or keep holds its digest), then syncs the
// directory, and returns how many bytes it freed.
func (s *Store) GC(keep map[string]bool, keepPartial bool) (int64, error) {
	ents, err := os.ReadDir(s.blobDir())
	if err != nil {
		return 0, fmt.Errorf("oci: gc: %w", err)
	}
	var freed int64
	for _, e := range ents {
		hx, partial := strings.CutSuffix(e.Name(), ".part")
		if keep["sha256:"+hx] || (partial && keepPartial) {
			continue
		}
		if fi, err := e.Info(); err == nil {
			freed += fi.Size()
		}
		if err := os.Remove(filepath.Join(s.blobDir(), e.Name())); err != nil {
			return freed, fmt.Errorf("oci: gc: %w", err)
		}
		stage("blob removed")
	}
	return freed, syncDir(s.blobDir())
}

// writeIndex writes the layout's index.json naming manifests.
func (s *Store) writeIndex(manifests []Descriptor) error {
	if manifests == nil {
		manifests = []Descriptor{}
	}
	b, err := json.Marshal(Document{SchemaVersion: 2, MediaType: MediaTypeIndex, Manifests: manifests})
	if err != nil {
		return err
	}
	if err := writeDurable(filepath.Join(s.dir, "index.json"), b); err != nil {
		return fmt.Errorf("oci: store: %w", err)
	}
	return nil
}

// writeDurable writes a file through a temporary file in the same
// directory: fsync, rename, fsync of the directory.
func writeDurable(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
