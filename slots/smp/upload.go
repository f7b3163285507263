package smp

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrUpload is returned when an upload cannot go on: the device reported
// an offset outside the image, stopped making progress, or found that the
// uploaded bytes do not match their SHA-256.
var ErrUpload = errors.New("smp: upload failed")

// stallLimit is how many answers in a row may repeat an offset before an
// upload gives up (the device keeps refusing the chunk without an error).
const stallLimit = 8

// UploadOptions describes one upload.
type UploadOptions struct {
	// BufSize is the device's SMP buffer size (see [Client.Params]); each
	// request, header included, fits in it. Required.
	BufSize int
	// SHA is the SHA-256 of the whole upload. It names the upload session:
	// a device that keeps it resumes a broken upload at the offset it
	// reports, and checks the bytes against it at the end.
	SHA []byte
	// Progress, if set, is called after each acknowledged chunk.
	Progress func(done, total int64)
}

// Upload sends size bytes from r to the device's secondary slot (image
// group, command 1), in chunks that fit the device's buffer. The device
// answers each chunk with the offset it expects next; Upload always
// continues from there, so a chunk lost in either direction is resent,
// and an upload the device remembers (same SHA and length) resumes where
// the device stopped, after a dropped link or a reset of either end.
func (c *Client) Upload(ctx context.Context, r io.ReaderAt, size int64, o UploadOptions) error {
	if size <= 0 {
		return fmt.Errorf("%w: empty image", ErrUpload)
	}
	var off uint64
	stalls := 0
	total := uint64(size)
	buf := make([]byte, o.BufSize)
	for {
		req := UploadRequest{Off: off}
		if off == 0 {
			req.Len, req.SHA = &total, o.SHA
		}
		n, err := chunkLen(req, o.BufSize, total-off)
		if err != nil {
			return err
		}
		req.Data = buf[:n]
		if _, err := r.ReadAt(req.Data, int64(off)); err != nil && !(errors.Is(err, io.EOF) && off+uint64(n) == total) {
			return fmt.Errorf("smp: upload: read image at %d: %w", off, err)
		}
		var resp UploadResponse
		if err := c.Do(ctx, OpWrite, GroupImage, CmdImageUpload, req, &resp); err != nil {
			return fmt.Errorf("smp: upload at offset %d of %d: %w", off, total, err)
		}
		if resp.Off == nil || *resp.Off > total {
			return fmt.Errorf("%w: device answered offset %v for an image of %d bytes", ErrUpload, resp.Off, total)
		}
		next := *resp.Off
		if next == total {
			if resp.Match != nil && !*resp.Match {
				return fmt.Errorf("%w: device reports the uploaded bytes do not match their SHA-256", ErrUpload)
			}
			report(o.Progress, total, total)
			return nil
		}
		if next == off {
			if stalls++; stalls >= stallLimit {
				return fmt.Errorf("%w: device keeps asking for offset %d", ErrUpload, next)
			}
		} else {
			stalls = 0
		}
		off = next
		report(o.Progress, off, total)
	}
}

func report(f func(done, total int64), done, total uint64) {
	if f != nil {
		f(int64(done), int64(total))
	}
}

// chunkLen is how many data bytes fit one request next to req's other
// fields, in a packet of at most bufSize bytes.
func chunkLen(req UploadRequest, bufSize int, left uint64) (int, error) {
	req.Data = nil
	b, err := Marshal(req)
	if err != nil {
		return 0, err
	}
	// An empty byte string is one byte; n bytes add n, and their length
	// prefix grows by one byte from 24 bytes on, by two from 256 (RFC
	// 8949, 3.1).
	avail := bufSize - HeaderSize - len(b)
	n := avail
	for n > 0 && n+prefixGrowth(n) > avail {
		n--
	}
	if n < 1 {
		return 0, fmt.Errorf("%w: device buffer of %d bytes holds no image data", ErrUpload, bufSize)
	}
	return int(min(uint64(n), left)), nil
}

func prefixGrowth(n int) int {
	switch {
	case n < 24:
		return 0
	case n < 256:
		return 1
	}
	return 2
}
