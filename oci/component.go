package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// Resolver returns the signed OCI metadata of the target whose bytes have
// the given SHA-256 (hex): the manifest the updater wrote into a slot.
// [TUFResolver] answers from a TUF refresh.
type Resolver func(ctx context.Context, manifestSHA256 string) (verify.OCI, error)

// TUFResolver resolves through a fresh, verified TUF refresh.
func TUFResolver(c *verify.Client) Resolver {
	return func(ctx context.Context, sum string) (verify.OCI, error) {
		ts, err := c.Refresh(ctx)
		if err != nil {
			return verify.OCI{}, err
		}
		for _, t := range ts.Targets {
			if t.SHA256() == sum && t.Custom.OCI != nil {
				return *t.Custom.OCI, nil
			}
		}
		return verify.OCI{}, fmt.Errorf("oci: no signed OCI target has sha256 %s", sum)
	}
}

// Config configures a [Component].
type Config struct {
	// Dir holds everything: the manifest slots, the image layout (store)
	// and the unpacked bundles. Required.
	Dir string
	// Hardware is this device's hardware id, matched against the signed
	// platform map of an index. Required.
	Hardware string
	// Registry is the registry to pull from; its Repository is ignored
	// (the signed metadata names it).
	Registry RegistryConfig
	// Resolve finds the signed metadata of a manifest. Required.
	Resolve Resolver
	// Limits bound what an image may unpack to; zero fields take the
	// defaults of slots.UnpackLimits.
	Limits slots.UnpackLimits
	// AllowDevices lets layers create character and block device nodes
	// (Linux only; the process needs CAP_MKNOD). Off, they are refused
	// with ErrUnsafeLayer. Fifos and other special files are always
	// refused.
	AllowDevices bool
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// PullStats is what the last Arm moved.
type PullStats struct {
	// Fetched is the bytes that crossed the network (blobs and manifests).
	Fetched int64
	// ImageSize is the sum of the config and layer sizes of the image.
	ImageSize int64
	// Reused is how many blobs were already present.
	Reused int
}

// Component is an OCI image component: two slots (its [slots.Slot]s
// receive the signed manifest) and a [slots.BootControl] whose Arm pulls
// and unpacks the image before arming the trial. The layout of Dir:
//
//	manifest -> .manifest.switchback/a    the slots.File of the manifests
//	store/                                OCI image layout: every blob of both slots
//	bundles/a, bundles/b                  runtime bundles (config.json, rootfs/)
//
// A Component is not safe for concurrent use.
type Component struct {
	cfg   Config
	file  *slots.File
	store *Store
	log   *slog.Logger
	last  PullStats
}

// New opens or creates the component in cfg.Dir. A new component starts
// with an empty manifest in slot "a": nothing to run.
func New(cfg Config) (*Component, error) {
	if cfg.Dir == "" || cfg.Hardware == "" || cfg.Resolve == nil {
		return nil, errors.New("oci: Config needs Dir, Hardware and Resolve")
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "bundles"), 0o755); err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	mpath := filepath.Join(cfg.Dir, "manifest")
	if _, err := os.Lstat(mpath); errors.Is(err, os.ErrNotExist) {
		if err := writeDurable(mpath, nil); err != nil {
			return nil, fmt.Errorf("oci: %w", err)
		}
	}
	f, err := slots.NewFile(mpath)
	if err != nil {
		return nil, err
	}
	st, err := OpenStore(filepath.Join(cfg.Dir, "store"))
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Component{cfg: cfg, file: f, store: st, log: log}
	return c, c.removeTemps()
}

// removeTemps removes bundles a cut left half unpacked.
func (c *Component) removeTemps() error {
	ents, err := os.ReadDir(filepath.Join(c.cfg.Dir, "bundles"))
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			if err := os.RemoveAll(filepath.Join(c.cfg.Dir, "bundles", e.Name())); err != nil {
				return fmt.Errorf("oci: %w", err)
			}
		}
	}
	return nil
}

// Slots returns the two manifest slots, "a" and "b".
func (c *Component) Slots() []slots.Slot { return c.file.Slots() }

// Store is the component's image layout.
func (c *Component) Store() *Store { return c.store }

// LastPull reports what the last successful Arm moved.
func (c *Component) LastPull() PullStats { return c.last }

// Bundle is the runtime bundle directory of slot (config.json, rootfs/).
func (c *Component) Bundle(slot string) string { return filepath.Join(c.cfg.Dir, "bundles", slot) }

// HasImage reports whether slot holds an unpacked image.
func (c *Component) HasImage(slot string) bool {
	_, err := os.Stat(filepath.Join(c.Bundle(slot), "config.json"))
	return err == nil
}

// Status reports which slot runs, which is committed, and any trial.
func (c *Component) Status(ctx context.Context) (slots.BootStatus, error) { return c.file.Status(ctx) }

// Commit commits the running slot, then removes the blobs no slot's image
// references (durably). A GC failure is logged: the commit stands.
func (c *Component) Commit(ctx context.Context, slot string) error {
	if err := c.file.Commit(ctx, slot); err != nil {
		return err
	}
	stage("committed")
	if freed, err := c.GC(); err != nil {
		c.log.Warn("oci: gc after commit", "err", err)
	} else {
		c.log.Info("oci: gc after commit", "freed_bytes", freed)
	}
	return nil
}

// MarkBad records that slot failed; see [slots.BootControl].
func (c *Component) MarkBad(ctx context.Context, slot string) error { return c.file.MarkBad(ctx, slot) }

// CountStart consumes one try of an armed trial; see [slots.StartCounter].
func (c *Component) CountStart(ctx context.Context) (slots.BootStatus, error) {
	return c.file.CountStart(ctx)
}

// Arm pulls the image whose manifest slot holds, verifies every blob,
// unpacks it into the slot's bundle and only then arms the trial. Any
// failure leaves nothing armed and the running slot untouched.
func (c *Component) Arm(ctx context.Context, slot string, tries int) error {
	st, err := c.file.Status(ctx)
	if err != nil {
		return err
	}
	if slot == st.Booted {
		return fmt.Errorf("oci: arm %s: %w", slot, slots.ErrSlotActive)
	}
	if st.Trial != "" || st.Primary != st.Booted {
		// The slot may be the rollback target of a trial: keep it.
		return fmt.Errorf("oci: arm %s: a trial of %s is pending (primary %s)", slot, st.Trial, st.Primary)
	}
	manifest, err := c.readSlot(ctx, slot)
	if err != nil {
		return err
	}
	if err := c.clearSlot(slot, st.Booted); err != nil {
		return err
	}
	if err := c.prepare(ctx, slot, manifest); err != nil {
		return err
	}
	if err := c.file.Arm(ctx, slot, tries); err != nil {
		return err
	}
	stage("armed")
	return nil
}

func (c *Component) readSlot(ctx context.Context, slot string) ([]byte, error) {
	s, err := c.file.Slot(slot)
	if err != nil {
		return nil, err
	}
	r, err := s.Reader(ctx)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if r.Size() > maxManifestSize {
		return nil, fmt.Errorf("%w: slot %s holds %d bytes", ErrBadManifest, slot, r.Size())
	}
	return io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
}

// GC removes the blobs that the images of neither slot reference.
func (c *Component) GC() (int64, error) { return c.collect([]string{"a", "b"}, false) }

// collect removes the blobs the images of keepSlots do not reference, and
// the partial downloads unless keepPartial, and rewrites the layout's
// index.json to name the images kept.
func (c *Component) collect(keepSlots []string, keepPartial bool) (int64, error) {
	keep := map[string]bool{}
	var index []Descriptor
	for _, s := range keepSlots {
		b, err := os.ReadFile(filepath.Join(c.Bundle(s), "manifest.json"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("oci: gc: %w", err)
		}
		md := Descriptor{MediaType: MediaTypeManifest, Digest: digestOf(b), Size: int64(len(b)),
			Annotations: map[string]string{"org.opencontainers.image.ref.name": s}}
		index = append(index, md)
		keep[md.Digest] = true
		var d Document
		if err := json.Unmarshal(b, &d); err != nil || d.Config == nil {
			return 0, fmt.Errorf("oci: gc: bundle %s: unreadable manifest.json", s)
		}
		if d.MediaType != "" {
			index[len(index)-1].MediaType = d.MediaType
		}
		keep[d.Config.Digest] = true
		for _, l := range d.Layers {
			keep[l.Digest] = true
		}
	}
	// index.json first: it must never name a blob that is gone.
	if err := c.store.writeIndex(index); err != nil {
		return 0, err
	}
	stage("index written")
	return c.store.GC(keep, keepPartial)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// clearSlot removes the image slot held before it receives a new one, so
// that the disk holds at most the running image, the new one and a
// partial download. The slot is neither running nor the committed one.
func (c *Component) clearSlot(slot, booted string) error {
	if err := os.RemoveAll(c.Bundle(slot)); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	if err := syncDir(filepath.Join(c.cfg.Dir, "bundles")); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	_, err := c.collect([]string{booted}, true)
	return err
}
