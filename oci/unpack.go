package oci

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/switchback-ota/switchback/slots"
)

// ErrUnsafeLayer is wrapped by the errors of a layer that breaks the
// unpacking rules (those of directory slots, [slots.Unpacker], with OCI
// layer semantics): a path that escapes the root (absolute, ".."), an
// entry written through a symlink, a device node unless
// Config.AllowDevices, a fifo or other special file, a hard link to
// something that is not a regular file of the tree, more entries or bytes
// than the limits, or bytes that are not a complete tar archive. The
// layer's digest is signed, so this is the release's fault: it wraps
// [slots.ErrBadImage].
var ErrUnsafeLayer = slots.BadImageError("oci: unsafe layer")

// applyLayers applies the layers of doc, in order, to rootfs with the
// safe-unpack rules of directory slots (whiteouts honoured, later layers
// replacing earlier entries), and makes the tree durable.
func (c *Component) applyLayers(ctx context.Context, rootfs string, doc *Document) error {
	x, err := slots.NewUnpacker(rootfs, slots.UnpackOptions{Limits: c.cfg.Limits, Layers: true, Devices: c.cfg.AllowDevices})
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	defer x.Close()
	for _, l := range doc.Layers {
		f, err := os.Open(c.store.Path(l.Digest))
		if err != nil {
			return fmt.Errorf("oci: %w", err)
		}
		err = x.Unpack(ctx, f)
		f.Close()
		if err != nil {
			return layerError(ctx, l.Digest, err)
		}
		stage("layer")
	}
	if err := x.Sync(); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	return nil
}

// layerError tells the release's fault (an unsafe or malformed layer,
// ErrUnsafeLayer) from the device's (the disk, a cancelled context).
func layerError(ctx context.Context, digest string, err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	if !errors.Is(err, slots.ErrUnsafeArchive) && (ctx.Err() != nil || errors.As(err, &pe) || errors.As(err, &le)) {
		return fmt.Errorf("oci: layer %s: %w", digest, err)
	}
	return fmt.Errorf("%w: layer %s: %w", ErrUnsafeLayer, digest, err)
}
