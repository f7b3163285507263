package verify

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/mod/semver"
)

// Target kinds, the value of [Custom].Kind.
const (
	// KindImage is a full image (the default when kind is absent).
	KindImage = "image"
	// KindPatch is a static binary patch from one base release to the
	// image named by [Custom].Of.
	KindPatch = "patch"
	// KindChunkIndex is the chunk index of the image named by [Custom].Of,
	// for adaptive deltas.
	KindChunkIndex = "chunk-index"
)

// CompressionZstd marks a target whose bytes are a zstd stream; the
// uncompressed image is described by [Custom].Uncompressed.
const CompressionZstd = "zstd"

// Custom is the switchback part of a TUF target's custom metadata. It is
// signed with the targets role, so every field is as trusted as the target
// hashes. Unknown fields are ignored; missing required ones reject the
// target (see [ParseCustom]).
type Custom struct {
	// Component names what the image updates: "rootfs", "app", "config",
	// or a device behind the gateway. Required.
	Component string `json:"component"`
	// Version is the release's semantic version, with or without a
	// leading "v". Required.
	Version string `json:"version"`
	// Hardware lists the hardware ids the image runs on. Required, not
	// empty; "*" matches any hardware.
	Hardware []string `json:"hardware"`
	// MinVersion, when set, is the lowest installed version the release
	// may be installed over.
	MinVersion string `json:"min_version,omitempty"`
	// Kind is one of KindImage (default), KindPatch, KindChunkIndex.
	Kind string `json:"kind,omitempty"`
	// Of names, for patches and chunk indexes, the target path of the full
	// image they produce or describe.
	Of string `json:"of,omitempty"`
	// Base is, for a patch, the hex sha256 of the image it applies to.
	Base string `json:"base,omitempty"`
	// Format names the encoding of a patch or chunk index.
	Format string `json:"format,omitempty"`
	// Compression is "" for raw bytes or CompressionZstd.
	Compression string `json:"compression,omitempty"`
	// Uncompressed describes the image after decompression or patching:
	// required when Compression is set, and for patches.
	Uncompressed *Digest `json:"uncompressed,omitempty"`
	// OCI marks a container image: the target's bytes are its OCI
	// manifest or index, exactly as the registry serves them.
	OCI *OCI `json:"oci,omitempty"`
	// Channels lists the channels the release is published on ("stable",
	// "beta", a customer's name). Empty: every channel. A device follows
	// one channel (see [Policy].Channel).
	Channels []string `json:"channels,omitempty"`
	// Rollout, when set, stages the release over time (see [Rollout]).
	Rollout *Rollout `json:"rollout,omitempty"`
}

// OCI is the custom metadata of a container image target. Signing the
// manifest signs the config and layers through their digests.
type OCI struct {
	// Repository names the image in its registry ("apps/gateway"),
	// without the registry host, which the device configures. Required.
	Repository string `json:"repository"`
	// Platforms maps the platforms of an index ("linux/arm64/v8") to the
	// hardware ids that run them. Required for an index, absent for a
	// single-platform manifest.
	Platforms map[string][]string `json:"platforms,omitempty"`
}

// validate reports what is malformed in o.
func (o *OCI) validate(bad func(format string, a ...any)) {
	if o.Repository == "" || strings.Contains(o.Repository, "://") || strings.ContainsAny(o.Repository, " \t\n@") {
		bad("oci repository %q is empty or not a registry repository name", o.Repository)
	}
	for p, hw := range o.Platforms {
		if n := strings.Count(p, "/"); n < 1 || n > 2 || strings.Contains(p, "//") || strings.HasSuffix(p, "/") {
			bad("oci platform %q is not os/arch[/variant]", p)
		}
		if len(hw) == 0 || slices.Contains(hw, "") {
			bad("oci platform %q has no hardware id or an empty one", p)
		}
	}
}

// Digest is the length and SHA-256 of a byte stream.
type Digest struct {
	Length int64  `json:"length"`
	SHA256 string `json:"sha256"`
}

// ErrBadCustom is wrapped by every error about malformed custom metadata.
var ErrBadCustom = errors.New("verify: malformed target custom metadata")

// ParseCustom decodes and validates the custom metadata of a target. raw is
// the target's "custom" object; the switchback fields sit at its top level.
func ParseCustom(raw []byte) (Custom, error) {
	var c Custom
	if len(raw) == 0 || string(raw) == "null" {
		return c, fmt.Errorf("%w: no custom metadata", ErrBadCustom)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return Custom{}, fmt.Errorf("%w: %v", ErrBadCustom, err)
	}
	if err := c.Validate(); err != nil {
		return Custom{}, err
	}
	return c, nil
}

// Validate reports what is missing or malformed in c.
func (c Custom) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrBadCustom}, a...)...))
	}
	c.validateRelease(bad)
	c.validateKind(bad)
	c.validateCompression(bad)
	for _, ch := range c.Channels {
		if !ValidChannel(ch) {
			bad("channel %q must be 1 to 64 of [a-z0-9._-]", ch)
		}
	}
	if c.Rollout != nil {
		if err := c.Rollout.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	c.validateUncompressed(bad)
	if c.OCI != nil {
		c.OCI.validate(bad)
	}
	return errors.Join(errs...)
}

// validateRelease reports what is malformed in the fields that name the
// release: component, version, min_version and hardware.
func (c Custom) validateRelease(bad func(format string, a ...any)) {
	if c.Component == "" {
		bad("component missing")
	} else if strings.ContainsAny(c.Component, "/\\ \t\n") {
		bad("component %q has a separator or space", c.Component)
	}
	if c.Version == "" {
		bad("version missing")
	} else if !ValidVersion(c.Version) {
		bad("version %q is not a semantic version", c.Version)
	}
	if c.MinVersion != "" && !ValidVersion(c.MinVersion) {
		bad("min_version %q is not a semantic version", c.MinVersion)
	}
	if len(c.Hardware) == 0 {
		bad("hardware list missing or empty")
	}
	for _, h := range c.Hardware {
		if h == "" {
			bad("empty hardware id")
		}
	}
}

// validateKind reports an unknown kind, and the fields a patch or chunk
// index lacks.
func (c Custom) validateKind(bad func(format string, a ...any)) {
	switch c.Kind {
	case "", KindImage:
	case KindPatch:
		if c.Of == "" || c.Base == "" || c.Format == "" || c.Uncompressed == nil {
			bad("patch needs of, base, format and uncompressed")
		}
		if c.Base != "" && !isSHA256Hex(c.Base) {
			bad("base %q is not a hex sha256", c.Base)
		}
	case KindChunkIndex:
		if c.Of == "" || c.Format == "" {
			bad("chunk index needs of and format")
		}
	default:
		bad("unknown kind %q", c.Kind)
	}
}

// validateCompression reports an unknown compression, and a compressed
// target without the digest of its uncompressed bytes.
func (c Custom) validateCompression(bad func(format string, a ...any)) {
	switch c.Compression {
	case "":
	case CompressionZstd:
		if c.Uncompressed == nil {
			bad("compressed target without uncompressed digest")
		}
	default:
		bad("unknown compression %q", c.Compression)
	}
}

// validateUncompressed reports what is malformed in the uncompressed
// digest, when there is one.
func (c Custom) validateUncompressed(bad func(format string, a ...any)) {
	d := c.Uncompressed
	if d == nil {
		return
	}
	if d.Length < 0 {
		bad("negative uncompressed length")
	}
	if !isSHA256Hex(d.SHA256) {
		bad("uncompressed sha256 %q is not a hex sha256", d.SHA256)
	}
}

// ValidChannel reports whether ch is a channel name: 1 to 64 lower-case
// letters, digits, '.', '_' or '-'.
func ValidChannel(ch string) bool {
	if ch == "" || len(ch) > 64 {
		return false
	}
	for _, r := range ch {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func isSHA256Hex(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// ValidVersion reports whether v is a full semantic version: major, minor
// and patch, optionally a pre-release and build metadata ("1.2.3",
// "v1.2.3-rc.1+build.5"). Shorthands such as "1.2" are refused, so that
// every published version orders one way.
func ValidVersion(v string) bool {
	c := canonical(v)
	if !semver.IsValid(c) {
		return false
	}
	core := strings.TrimPrefix(c, "v")
	if i := strings.IndexAny(core, "-+"); i >= 0 {
		core = core[:i]
	}
	return strings.Count(core, ".") == 2
}

// CompareVersions compares two semantic versions by semver precedence: -1
// when a < b, 0 when equal, +1 when a > b. An invalid version sorts before
// every valid one.
func CompareVersions(a, b string) int { return semver.Compare(canonical(a), canonical(b)) }

func canonical(v string) string {
	if strings.HasPrefix(v, "v") {
		return v
	}
	return "v" + v
}
