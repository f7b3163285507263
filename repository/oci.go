package repository

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/switchback-ota/switchback/verify"
)

// OCI media types AddOCI accepts as target bytes.
const (
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// ociDoc is the part of a manifest or index AddOCI checks.
type ociDoc struct {
	SchemaVersion int    `json:"schemaVersion"`
	MediaType     string `json:"mediaType"`
	Config        *struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Manifests []struct {
		Platform *struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		} `json:"platform"`
	} `json:"manifests"`
}

// AddOCI records a container image as target path: manifest is the
// image's manifest or index exactly as the registry serves it (the device
// checks it against this target, then pulls every blob by the digests in
// it), custom.OCI names the registry repository and, for an index, maps
// its platforms to hardware ids. When custom.Hardware is empty it becomes
// the hardware ids of custom.OCI.Platforms. Every platform in the map must
// be one the index offers; a single-platform manifest takes no map.
func (r *Repo) AddOCI(ctx context.Context, path string, manifest []byte, custom verify.Custom) (Target, error) {
	if custom.OCI == nil {
		return Target{}, fmt.Errorf("%w: %s: custom metadata has no oci part", ErrBadTarget, path)
	}
	offered, err := ociPlatforms(manifest)
	if err != nil {
		return Target{}, fmt.Errorf("%w: %s: %w", ErrBadTarget, path, err)
	}
	if err := checkPlatformMap(offered, custom.OCI.Platforms); err != nil {
		return Target{}, fmt.Errorf("%w: %s: %w", ErrBadTarget, path, err)
	}
	if len(custom.Hardware) == 0 {
		for _, hw := range custom.OCI.Platforms {
			for _, h := range hw {
				if !slices.Contains(custom.Hardware, h) {
					custom.Hardware = append(custom.Hardware, h)
				}
			}
		}
		sort.Strings(custom.Hardware)
	}
	return r.AddTarget(ctx, path, bytes.NewReader(manifest), custom, AddOptions{})
}

// ociPlatforms parses a manifest or index: nil platforms for a manifest,
// the "os/arch[/variant]" of each entry for an index.
func ociPlatforms(b []byte) (platforms []string, err error) {
	var d ociDoc
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("not an OCI manifest or index: %w", err)
	}
	if d.SchemaVersion != 2 {
		return nil, fmt.Errorf("not an OCI manifest or index: schemaVersion %d", d.SchemaVersion)
	}
	switch {
	case d.Config != nil && (d.MediaType == "" || d.MediaType == mediaOCIManifest || d.MediaType == mediaDockerManifest):
		return nil, nil
	case d.Manifests != nil && (d.MediaType == "" || d.MediaType == mediaOCIIndex || d.MediaType == mediaDockerList):
		for _, m := range d.Manifests {
			if p := m.Platform; p != nil {
				platforms = append(platforms, strings.TrimSuffix(p.OS+"/"+p.Architecture+"/"+p.Variant, "/"))
			}
		}
		return platforms, nil
	}
	return nil, fmt.Errorf("not an OCI manifest or index (media type %q)", d.MediaType)
}

// checkPlatformMap checks the platform map against what the document
// offers (nil offered: a single-platform manifest).
func checkPlatformMap(offered []string, m map[string][]string) error {
	if offered == nil {
		if len(m) > 0 {
			return fmt.Errorf("a single-platform manifest takes no platform map")
		}
		return nil
	}
	if len(m) == 0 {
		return fmt.Errorf("an index needs a platform map (platforms offered: %s)", strings.Join(offered, ", "))
	}
	for p := range m {
		if !slices.Contains(offered, p) {
			return fmt.Errorf("platform %s is not in the index (offered: %s)", p, strings.Join(offered, ", "))
		}
	}
	return nil
}
