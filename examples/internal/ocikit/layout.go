package ocikit

import (
	"archive/tar"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/switchback-ota/switchback/oci"
)

// BigTag is the tag of the image WriteBigLayout writes.
const BigTag = "big"

// WriteBigLayout writes an OCI layout whose image BigTag has one
// uncompressed layer holding one random file of size bytes, and returns
// the manifest.
func WriteBigLayout(dir string, size int64) ([]byte, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	layer, err := writeBlob(blobs, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		if err := tw.WriteHeader(&tar.Header{Name: "big.bin", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
			return err
		}
		return tw.Close()
	})
	if err != nil {
		return nil, err
	}
	layer.MediaType = "application/vnd.oci.image.layer.v1.tar"
	cfg, err := writeBlob(blobs, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, `{"architecture":"amd64","os":"linux","config":{"Cmd":["/big.bin"]},"rootfs":{"type":"layers","diff_ids":[%q]}}`, layer.Digest)
		return err
	})
	if err != nil {
		return nil, err
	}
	cfg.MediaType = oci.MediaTypeConfig
	m, _ := json.Marshal(oci.Document{SchemaVersion: 2, MediaType: oci.MediaTypeManifest, Config: &cfg, Layers: []oci.Descriptor{layer}})
	md, err := writeBlob(blobs, func(w io.Writer) error { _, err := w.Write(m); return err })
	if err != nil {
		return nil, err
	}
	md.MediaType = oci.MediaTypeManifest
	md.Annotations = map[string]string{"org.opencontainers.image.ref.name": BigTag}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []oci.Descriptor{md}})
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		return nil, err
	}
	return m, os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

// writeBlob writes what fill produces as a content-addressed blob.
func writeBlob(blobs string, fill func(io.Writer) error) (oci.Descriptor, error) {
	f, err := os.CreateTemp(blobs, "tmp-")
	if err != nil {
		return oci.Descriptor{}, err
	}
	defer f.Close()
	h := sha256.New()
	if err := fill(io.MultiWriter(f, h)); err != nil {
		return oci.Descriptor{}, err
	}
	size, err := f.Seek(0, io.SeekCurrent) // fill wrote from the start, in order
	if err != nil {
		return oci.Descriptor{}, err
	}
	hx := hex.EncodeToString(h.Sum(nil))
	return oci.Descriptor{Digest: "sha256:" + hx, Size: size}, os.Rename(f.Name(), filepath.Join(blobs, hx))
}
