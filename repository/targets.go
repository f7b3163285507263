package repository

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/switchback-ota/switchback/internal/durable"
	"github.com/switchback-ota/switchback/verify"
)

// DefaultFrameSize is the uncompressed size of each zstd frame of a
// compressed target: a device resumes decompression at a frame boundary.
const DefaultFrameSize = 4 << 20

// AddOptions are the knobs of one AddTarget call.
type AddOptions struct {
	// Zstd compresses the release: the compressed bytes become the TUF
	// target, and the uncompressed length and sha256 go into the custom
	// metadata (Compression, Uncompressed).
	Zstd bool
	// FrameSize is the uncompressed size of each independent zstd frame;
	// 0 means DefaultFrameSize.
	FrameSize int
	// Role is the targets role that lists the release: "" or RoleTargets
	// for the top-level role, else a delegated role (see Delegate) whose
	// paths must cover the target path.
	Role string
}

// Target describes one published target.
type Target struct {
	// Path is the TUF target path, as devices name it.
	Path string
	// Length and SHA256 (hex) are those of the target bytes.
	Length int64
	SHA256 string
	// Custom is the raw custom metadata (nil when absent).
	Custom json.RawMessage
	// File is the target file, relative to the targets directory:
	// "<dir>/<sha256>.<name>".
	File string
}

// AddTarget streams src into the repository as target path with custom
// metadata custom, which must be valid (verify.Custom.Validate). With
// opts.Zstd the stored target is the compressed stream and custom gets its
// Compression and Uncompressed fields. A release image whose component
// and version are already published for a common hardware id is refused,
// under another path (devices could not choose between them) as under the
// same one (the bytes of a published version never change under devices
// that installed it): publish a new version, or remove the old target
// first. Another target already at path — a patch or chunk index made
// again — is replaced. The change is staged; Publish makes it visible.
// Memory use does not depend on the size of src.
func (r *Repo) AddTarget(ctx context.Context, path string, src io.Reader, custom verify.Custom, opts AddOptions) (Target, error) {
	if opts.Zstd {
		custom.Compression = verify.CompressionZstd
		// Placeholder until the stream is read; validated again below.
		custom.Uncompressed = &verify.Digest{SHA256: strings.Repeat("0", 64)}
	}
	if err := custom.Validate(); err != nil {
		return Target{}, fmt.Errorf("%w: %s: %w", ErrBadTarget, path, err)
	}
	if custom.Compression != "" && !opts.Zstd {
		return Target{}, fmt.Errorf("%w: %s: custom metadata says compression %q but AddOptions.Zstd is off", ErrBadTarget, path, custom.Compression)
	}
	if err := r.checkRolePath(opts.Role, path); err != nil {
		return Target{}, err
	}
	if other := r.duplicate(opts.Role, path, custom); other != "" {
		return Target{}, fmt.Errorf("%w: %s: %s %s for the same hardware is already published as %s; remove it first",
			ErrBadTarget, path, custom.Component, custom.Version, other)
	}
	var finish func(custom *verify.Custom)
	var enc func(io.Writer) (written func() error)
	if opts.Zstd {
		fs := opts.FrameSize
		if fs == 0 {
			fs = DefaultFrameSize
		}
		if fs < 0 {
			return Target{}, fmt.Errorf("%w: negative frame size", ErrBadTarget)
		}
		uh := sha256.New()
		var ulen int64
		enc = func(w io.Writer) func() error {
			return func() error {
				n, err := compressFrames(ctx, w, io.TeeReader(src, uh), fs)
				ulen = n
				return err
			}
		}
		finish = func(c *verify.Custom) {
			c.Uncompressed = &verify.Digest{Length: ulen, SHA256: hex.EncodeToString(uh.Sum(nil))}
		}
	}
	return r.addTarget(ctx, opts.Role, path, src, enc, func() (json.RawMessage, error) {
		if finish != nil {
			finish(&custom)
		}
		if err := custom.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadTarget, path, err)
		}
		return json.Marshal(custom)
	})
}

// AddTargetRaw is AddTarget without compression and with custom metadata
// taken verbatim (nil for none): for other metadata schemas, and for tests
// that publish malformed metadata on purpose. custom must be valid JSON.
func (r *Repo) AddTargetRaw(ctx context.Context, path string, src io.Reader, custom json.RawMessage) (Target, error) {
	return r.AddTargetRawIn(ctx, RoleTargets, path, src, custom)
}

// AddTargetRawIn is AddTargetRaw for the targets role role (RoleTargets or
// a delegated role). The role's delegation is not checked against path, so
// that tests can publish a target outside a role's paths on purpose.
func (r *Repo) AddTargetRawIn(ctx context.Context, role, path string, src io.Reader, custom json.RawMessage) (Target, error) {
	if string(bytes.TrimSpace(custom)) == "null" {
		// go-tuf drops "custom": null when it serialises metadata, so a
		// signature over it would not verify on any device: treat as absent.
		custom = nil
	}
	if custom != nil && !json.Valid(custom) {
		return Target{}, fmt.Errorf("%w: %s: custom metadata is not valid JSON", ErrBadTarget, path)
	}
	if _, err := r.targetsRole(role); err != nil {
		return Target{}, err
	}
	return r.addTarget(ctx, role, path, src, nil, func() (json.RawMessage, error) { return custom, nil })
}

// checkRolePath refuses a target path a delegated role is not trusted for:
// devices would not find it there.
func (r *Repo) checkRolePath(role, path string) error {
	if role == "" || role == RoleTargets {
		return nil
	}
	if _, err := r.targetsRole(role); err != nil {
		return err
	}
	_, d := r.delegator(role)
	if d == nil {
		return fmt.Errorf("%w: no role delegates to %s", ErrBadTarget, role)
	}
	for _, p := range d.Paths {
		if verify.MatchPath(p, path) {
			return nil
		}
	}
	if len(d.PathHashPrefixes) > 0 {
		sum := sha256.Sum256([]byte(path))
		for _, pre := range d.PathHashPrefixes {
			if strings.HasPrefix(hex.EncodeToString(sum[:]), pre) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %s: role %s is not delegated this path (%q)", ErrBadTarget, path, role, d.Paths)
}

// compressFrames writes src as independent zstd frames of frameSize
// uncompressed bytes each (the last may be shorter; an empty src gives one
// empty frame) and returns the uncompressed length.
func compressFrames(ctx context.Context, w io.Writer, src io.Reader, frameSize int) (int64, error) {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
	if err != nil {
		return 0, fmt.Errorf("repository: zstd: %w", err)
	}
	defer e.Close()
	buf := make([]byte, frameSize)
	var out []byte
	var total int64
	for first := true; ; first = false {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := readFull(src, buf)
		if err != nil {
			return total, fmt.Errorf("repository: read release: %w", err)
		}
		if n == 0 && !first {
			return total, nil
		}
		total += int64(n)
		out = e.EncodeAll(buf[:n], out[:0])
		if _, werr := w.Write(out); werr != nil {
			return total, fmt.Errorf("repository: write target: %w", werr)
		}
		if n < frameSize {
			return total, nil
		}
	}
}

// readFull reads until buf is full or src ends; unlike io.ReadFull it
// keeps a source's own io.ErrUnexpectedEOF an error.
func readFull(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// addTarget stores src as target tpath of role ("" for the top-level
// role) and stages role's metadata listing it. enc, when not nil, encodes
// src on its way to the file; custom gives the custom metadata once the
// bytes are written, and may still refuse them.
func (r *Repo) addTarget(ctx context.Context, role, tpath string, src io.Reader, enc func(io.Writer) func() error, custom func() (json.RawMessage, error)) (Target, error) {
	if err := ValidTargetPath(tpath); err != nil {
		return Target{}, err
	}
	tf, err := r.storeTarget(ctx, tpath, src, enc, custom)
	if err != nil {
		return Target{}, err
	}
	if err := r.listTarget(role, tf); err != nil {
		return Target{}, err
	}
	return targetOf(tpath, tf), nil
}

// storeTarget writes the file of target tpath, named by its content
// ("<dir>/<sha256>.<name>", see Target.File), and returns the target's
// description with custom's metadata. The bytes go to a temporary file
// beside the final one that is renamed into place only once custom has
// accepted them and they are on disk: a failed add leaves no file behind.
func (r *Repo) storeTarget(ctx context.Context, tpath string, src io.Reader, enc func(io.Writer) func() error, custom func() (json.RawMessage, error)) (*metadata.TargetFiles, error) {
	dir, base := path.Split(tpath)
	fsDir := filepath.Join(r.TargetsDir(), filepath.FromSlash(dir))
	if err := os.MkdirAll(fsDir, 0o755); err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	f, err := os.CreateTemp(fsDir, ".tmp-"+base+"-*")
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, sum, err := writeTarget(ctx, f, src, enc)
	if err != nil {
		return nil, err
	}
	raw, err := custom()
	if err != nil {
		return nil, err
	}
	if err := closeTarget(f); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(fsDir, hex.EncodeToString(sum)+"."+base)); err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	f = nil
	if err := durable.SyncDir(fsDir); err != nil {
		return nil, err
	}
	tf := &metadata.TargetFiles{Length: n, Hashes: metadata.Hashes{"sha256": sum}, Path: tpath}
	if raw != nil {
		c := json.RawMessage(append([]byte(nil), raw...))
		tf.Custom = &c
	}
	return tf, nil
}

// writeTarget copies src to w, through enc when it is not nil, and
// returns the length and sha256 of the bytes written to w.
func writeTarget(ctx context.Context, w io.Writer, src io.Reader, enc func(io.Writer) func() error) (int64, []byte, error) {
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
	bw := bufio.NewWriterSize(cw, 1<<16)
	var err error
	if enc != nil {
		err = enc(bw)()
	} else if _, err = io.Copy(bw, ctxReader{ctx, src}); err != nil {
		err = fmt.Errorf("repository: read release: %w", err)
	}
	if err == nil {
		err = bw.Flush()
	}
	return cw.n, h.Sum(nil), err
}

// closeTarget syncs a written target file to disk, makes it readable by
// all (it is served as is) and closes it.
func closeTarget(f *os.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("repository: %w", err)
	}
	return nil
}

// listTarget puts tf in the working metadata of role ("" for the
// top-level role), replacing any target at its path, and stages the
// change.
func (r *Repo) listTarget(role string, tf *metadata.TargetFiles) error {
	if role == "" {
		role = RoleTargets
	}
	m, err := r.targetsRole(role)
	if err != nil {
		return err
	}
	r.touch(role)
	m.Signed.Targets[tf.Path] = tf
	return r.stage(role)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ValidTargetPath reports why p cannot be a target path: it must be a
// clean, relative, slash-separated path without "." or ".." elements, made
// of letters, digits and "._-+~@=,", because it becomes both a file name on
// the server and part of a URL that no client should have to escape.
func ValidTargetPath(p string) error {
	bad := func(why string) error { return fmt.Errorf("%w: target path %q %s", ErrBadTarget, p, why) }
	switch {
	case p == "":
		return bad("is empty")
	case strings.HasPrefix(p, "/"):
		return bad("is absolute")
	case path.Clean(p) != p:
		return bad("is not clean")
	case strings.ContainsAny(p, "\\"):
		return bad("has a backslash")
	}
	for _, c := range p {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.ContainsRune("._-+~@=,/", c):
		default:
			return bad(fmt.Sprintf("has the character %q (allowed: letters, digits, \"._-+~@=,/\")", c))
		}
	}
	for _, el := range strings.Split(p, "/") {
		if el == "." || el == ".." || strings.HasPrefix(el, ".tmp-") {
			return bad("has a reserved element")
		}
	}
	return nil
}

func targetOf(p string, tf *metadata.TargetFiles) Target {
	t := Target{Path: p, Length: tf.Length, SHA256: hex.EncodeToString(tf.Hashes["sha256"])}
	if tf.Custom != nil {
		t.Custom = append(json.RawMessage(nil), (*tf.Custom)...)
	}
	dir, base := path.Split(p)
	t.File = path.Join(dir, t.SHA256+"."+base)
	return t
}

// duplicate returns a target path of role holding the same kind, component
// and version for a common hardware id: another path (devices could not
// tell which one to install), or path itself for a release image (its
// published bytes must not change). Derived targets (patches, indexes)
// may replace themselves.
func (r *Repo) duplicate(role, path string, c verify.Custom) string {
	kind := func(k string) string {
		if k == "" {
			return verify.KindImage
		}
		return k
	}
	m, err := r.targetsRole(role)
	if err != nil {
		return ""
	}
	for p, tf := range m.Signed.Targets {
		if (p == path && kind(c.Kind) != verify.KindImage) || tf.Custom == nil {
			continue
		}
		o, err := verify.ParseCustom(*tf.Custom)
		if err != nil || o.Component != c.Component || kind(o.Kind) != kind(c.Kind) || o.Of != c.Of || o.Base != c.Base ||
			verify.CompareVersions(o.Version, c.Version) != 0 {
			continue
		}
		for _, h := range c.Hardware {
			if slices.Contains(o.Hardware, h) || h == "*" || slices.Contains(o.Hardware, "*") {
				return p
			}
		}
	}
	return ""
}

// RemoveTarget drops target path from the working targets metadata. The
// file stays on disk: older snapshots still name it. Publish makes the
// change visible.
func (r *Repo) RemoveTarget(path string) error {
	if _, ok := r.targets().Signed.Targets[path]; !ok {
		return fmt.Errorf("%w: target %q", ErrNotFound, path)
	}
	r.touch(RoleTargets)
	delete(r.targets().Signed.Targets, path)
	return r.stage(RoleTargets)
}

// Targets lists the working targets (published plus staged changes), by
// path.
func (r *Repo) Targets() []Target {
	var ts []Target
	for p, tf := range r.targets().Signed.Targets {
		ts = append(ts, targetOf(p, tf))
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Path < ts[j].Path })
	return ts
}

// Target returns one working target.
func (r *Repo) Target(path string) (Target, error) {
	tf, ok := r.targets().Signed.Targets[path]
	if !ok {
		return Target{}, fmt.Errorf("%w: target %q", ErrNotFound, path)
	}
	return targetOf(path, tf), nil
}
