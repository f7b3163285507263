package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// prepare pulls and unpacks the image of manifest into slot's bundle.
func (c *Component) prepare(ctx context.Context, slot string, manifest []byte) error {
	sum := sha256.Sum256(manifest)
	meta, err := c.cfg.Resolve(ctx, hex.EncodeToString(sum[:]))
	if err != nil {
		return fmt.Errorf("oci: slot %s: %w", slot, err)
	}
	rc := c.cfg.Registry
	rc.Repository = meta.Repository
	reg, err := NewRegistry(ctx, rc)
	if err != nil {
		return err
	}
	doc, raw, err := c.platformManifest(ctx, reg, manifest, meta.Platforms)
	if err != nil {
		return err
	}
	stats, err := c.pull(ctx, reg, doc, raw)
	if err != nil {
		return err
	}
	stage("pulled")
	if err := c.unpack(ctx, slot, doc, raw); err != nil {
		return err
	}
	c.last = stats
	c.log.Info("oci: image ready", "slot", slot, "fetched", stats.Fetched, "image_size", stats.ImageSize, "reused_blobs", stats.Reused)
	return nil
}

// platformManifest returns the image manifest for this hardware: the
// document itself, or the index entry chosen by the signed platform map,
// fetched by digest.
func (c *Component) platformManifest(ctx context.Context, reg *Registry, b []byte, platforms map[string][]string) (*Document, []byte, error) {
	doc, err := ParseDocument(b)
	if err != nil {
		return nil, nil, err
	}
	if !doc.IsIndex() {
		return doc, b, nil
	}
	d, err := SelectPlatform(doc, platforms, c.cfg.Hardware)
	if err != nil {
		return nil, nil, err
	}
	raw, _, err := reg.Manifest(ctx, d.Digest)
	if err != nil {
		return nil, nil, err
	}
	if doc, err = ParseDocument(raw); err != nil {
		return nil, nil, err
	}
	if doc.IsIndex() {
		return nil, nil, fmt.Errorf("%w: index entry %s is an index itself", ErrBadManifest, d.Digest)
	}
	return doc, raw, nil
}

// pull makes the manifest, config and layers present in the store.
func (c *Component) pull(ctx context.Context, reg *Registry, doc *Document, raw []byte) (PullStats, error) {
	var st PullStats
	sum := sha256.Sum256(raw)
	md := Descriptor{Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(raw))}
	if !c.store.Has(md) {
		if err := writeDurable(c.store.Path(md.Digest), raw); err != nil {
			return st, fmt.Errorf("oci: storing manifest: %w", err)
		}
	}
	for _, d := range append([]Descriptor{*doc.Config}, doc.Layers...) {
		st.ImageSize += d.Size
		if c.store.Has(d) {
			st.Reused++
			continue
		}
		n, err := c.store.Fetch(ctx, reg, d)
		st.Fetched += n
		if err != nil {
			return st, err
		}
		stage("blob")
	}
	return st, nil
}

// unpack applies the layers into a fresh directory beside the bundles,
// writes the runtime config, syncs, and renames it over slot's bundle
// (which is not the running one).
func (c *Component) unpack(ctx context.Context, slot string, doc *Document, raw []byte) error {
	bundles := filepath.Join(c.cfg.Dir, "bundles")
	tmp := filepath.Join(bundles, ".tmp-"+slot)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(tmp, "rootfs"), 0o755); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	if err := c.applyLayers(ctx, filepath.Join(tmp, "rootfs"), doc); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	cfg, err := os.ReadFile(c.store.Path(doc.Config.Digest))
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	spec, err := RuntimeSpec(cfg)
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := writeDurable(filepath.Join(tmp, "config.json"), spec); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	if err := writeDurable(filepath.Join(tmp, "manifest.json"), raw); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	stage("unpacked")
	if err := os.RemoveAll(c.Bundle(slot)); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	stage("old bundle removed")
	if err := os.Rename(tmp, c.Bundle(slot)); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	stage("renamed")
	if err := syncDir(bundles); err != nil {
		return err
	}
	_, err = c.collect([]string{"a", "b"}, true)
	return err
}

// stage marks a step of an install; the kill tests stop the process there.
var stage = func(name string) {}
