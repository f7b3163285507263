package oci

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/switchback-ota/switchback/slots"
)

// Media types of the documents this package reads.
const (
	MediaTypeManifest       = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeIndex          = "application/vnd.oci.image.index.v1+json"
	MediaTypeConfig         = "application/vnd.oci.image.config.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// maxManifestSize bounds a manifest or index (the registry spec suggests 4 MiB).
const maxManifestSize = 4 << 20

// Errors callers branch on.
var (
	// ErrBadManifest is wrapped by errors about a manifest or index that
	// does not parse or is not one this package can use.
	ErrBadManifest = slots.BadImageError("oci: malformed manifest")
	// ErrNoPlatform is wrapped when an index offers no platform for this
	// hardware.
	ErrNoPlatform = slots.BadImageError("oci: no platform for this hardware")
)

// Descriptor points at a blob or manifest by digest.
type Descriptor struct {
	MediaType string    `json:"mediaType"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Platform  *Platform `json:"platform,omitempty"`
	// Annotations are carried as they are (an image layout names its
	// images with org.opencontainers.image.ref.name).
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Platform is the platform of an index entry.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// String is "os/arch" or "os/arch/variant".
func (p Platform) String() string {
	if p.Variant == "" {
		return p.OS + "/" + p.Architecture
	}
	return p.OS + "/" + p.Architecture + "/" + p.Variant
}

// Document is a parsed manifest or index. Exactly one of Config (a
// manifest) and Manifests (an index) is set.
type Document struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Config        *Descriptor  `json:"config,omitempty"`
	Layers        []Descriptor `json:"layers,omitempty"`
	Manifests     []Descriptor `json:"manifests,omitempty"`
}

// IsIndex reports whether d is an index.
func (d *Document) IsIndex() bool { return d.Config == nil }

// ParseDocument parses and checks a manifest or index: schema version 2, a
// known media type, well-formed sha256 digests and sizes everywhere.
func ParseDocument(b []byte) (*Document, error) {
	if len(b) > maxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadManifest, len(b), maxManifestSize)
	}
	var d Document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if d.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: schemaVersion %d", ErrBadManifest, d.SchemaVersion)
	}
	switch {
	case d.Config != nil && d.Manifests == nil:
		if d.MediaType != "" && d.MediaType != MediaTypeManifest && d.MediaType != MediaTypeDockerManifest {
			return nil, fmt.Errorf("%w: manifest media type %q", ErrBadManifest, d.MediaType)
		}
		descs := append([]Descriptor{*d.Config}, d.Layers...)
		return &d, checkDescriptors(descs)
	case d.Config == nil && d.Layers == nil && d.Manifests != nil:
		if d.MediaType != "" && d.MediaType != MediaTypeIndex && d.MediaType != MediaTypeDockerList {
			return nil, fmt.Errorf("%w: index media type %q", ErrBadManifest, d.MediaType)
		}
		return &d, checkDescriptors(d.Manifests)
	}
	return nil, fmt.Errorf("%w: neither a manifest (config, layers) nor an index (manifests)", ErrBadManifest)
}

func checkDescriptors(ds []Descriptor) error {
	for _, x := range ds {
		if _, err := digestHex(x.Digest); err != nil {
			return err
		}
		if x.Size < 0 {
			return fmt.Errorf("%w: negative size for %s", ErrBadManifest, x.Digest)
		}
	}
	return nil
}

// digestHex returns the hex part of a "sha256:<64 hex>" digest.
func digestHex(d string) (string, error) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: digest %q is not sha256:<64 lowercase hex>", ErrBadManifest, d)
	}
	return h, nil
}

// SelectPlatform picks the index entry for hardware: the platforms that
// the signed map assigns to hardware, and of those the first the index
// lists. It returns an error wrapping ErrNoPlatform, naming what is
// offered, when there is none.
func SelectPlatform(index *Document, platforms map[string][]string, hardware string) (Descriptor, error) {
	var mine []string
	for p, hw := range platforms {
		if slices.Contains(hw, hardware) || slices.Contains(hw, "*") {
			mine = append(mine, p)
		}
	}
	var offered []string
	for _, m := range index.Manifests {
		if m.Platform == nil {
			continue
		}
		p := m.Platform.String()
		if slices.Contains(mine, p) {
			return m, nil
		}
		offered = append(offered, p)
	}
	sort.Strings(mine)
	return Descriptor{}, fmt.Errorf("%w: hardware %q maps to [%s], the index offers [%s]",
		ErrNoPlatform, hardware, strings.Join(mine, " "), strings.Join(offered, " "))
}
