package updater

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/switchback-ota/switchback/slots"
	"github.com/switchback-ota/switchback/verify"
)

// checkpointEvery is how many bytes pass between durable checkpoints of a
// transfer: at most this much is fetched again after a power cut, and the
// fsync cost is paid once per this many bytes. A variable so that tests can
// make checkpoints frequent.
var checkpointEvery int64 = 4 << 20

// pipeline is the download sink: bytes flow network → wire verifier (the
// TUF hashes) → [zstd decoder → image verifier] → slot writer. It keeps no
// more than a buffer of bytes in memory, whatever the image size.
type pipeline struct {
	w        slots.Writer
	t        verify.Target
	pd       *pending
	st       *store
	progress func(done, total int64)

	wire   *verify.Verifier
	off    int64 // wire bytes delivered
	lastCk int64

	// Compressed targets only.
	img    *verify.Verifier
	pw     *io.PipeWriter
	done   chan error
	imgOff int64
}

func newPipeline(t verify.Target, w slots.Writer, pd *pending, st *store, progress func(done, total int64)) (*pipeline, error) {
	p := &pipeline{w: w, t: t, pd: pd, st: st, progress: progress}
	offset, hashState, validator := pd.Offset, pd.HashState, pd.Validator
	if err := p.reset(); err != nil {
		return nil, err
	}
	if p.img == nil && offset > 0 && len(hashState) > 0 {
		if err := p.wire.UnmarshalBinary(hashState); err == nil && p.wire.Written() == offset {
			p.off, p.lastCk = offset, offset
			pd.Offset, pd.HashState, pd.Validator = offset, hashState, validator
		} else {
			// An unusable checkpoint costs a re-download, nothing else.
			if err := p.reset(); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// reset starts the stream over from byte zero.
func (p *pipeline) reset() error {
	// The old stream is discarded, and with it any error it ended with.
	_ = p.stopDecoder(errRestarted)
	wire, err := verify.NewVerifier(p.t.Length, p.t.Hashes)
	if err != nil {
		return err
	}
	p.wire, p.off, p.lastCk, p.imgOff = wire, 0, 0, 0
	p.pd.Offset, p.pd.HashState, p.pd.Validator = 0, nil, ""
	switch p.t.Custom.Compression {
	case "":
	case verify.CompressionZstd:
		d := p.t.Custom.Uncompressed
		sum, err := hex.DecodeString(d.SHA256)
		if err != nil {
			return fmt.Errorf("uncompressed digest: %w", err)
		}
		if p.img, err = verify.NewVerifier(d.Length, map[string][]byte{"sha256": sum}); err != nil {
			return err
		}
		p.startDecoder()
	default:
		return fmt.Errorf("target %s: unsupported compression %q", p.t.Path, p.t.Custom.Compression)
	}
	return nil
}

var errRestarted = errors.New("transfer restarted")

func (p *pipeline) startDecoder() {
	pr, pw := io.Pipe()
	p.pw = pw
	p.done = make(chan error, 1)
	go func() {
		err := p.decode(pr)
		pr.CloseWithError(err)
		p.done <- err
	}()
}

func (p *pipeline) decode(r io.Reader) error {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return err
	}
	defer zr.Close()
	buf := make([]byte, 256<<10)
	for {
		n, rerr := zr.Read(buf)
		if n > 0 {
			if _, err := p.img.Write(buf[:n]); err != nil {
				return fmt.Errorf("decompressed image: %w", err)
			}
			if _, err := p.w.WriteAt(buf[:n], p.imgOff); err != nil {
				return fmt.Errorf("write slot: %w", err)
			}
			p.imgOff += int64(n)
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("decompress: %w", rerr)
		}
	}
}

func (p *pipeline) stopDecoder(cause error) error {
	if p.pw == nil {
		return nil
	}
	p.pw.CloseWithError(cause)
	err := <-p.done
	p.pw, p.done = nil, nil
	return err
}

// resumeOffset is where the transfer continues.
func (p *pipeline) resumeOffset() int64 { return p.off }

// Write implements download.Sink.
func (p *pipeline) Write(b []byte) (int, error) {
	if _, err := p.wire.Write(b); err != nil {
		return 0, err
	}
	if p.pw != nil {
		if _, err := p.pw.Write(b); err != nil {
			return 0, err
		}
	} else if _, err := p.w.WriteAt(b, p.off); err != nil {
		return 0, fmt.Errorf("write slot: %w", err)
	}
	p.off += int64(len(b))
	if p.progress != nil {
		p.progress(p.off, p.t.Length)
	}
	if p.pw == nil && p.off-p.lastCk >= checkpointEvery {
		if err := p.checkpoint(); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// checkpoint makes the bytes so far durable in the slot, then records the
// offset and hash state. The order matters: the state never claims bytes
// the slot might have lost.
func (p *pipeline) checkpoint() error {
	if err := p.w.Sync(); err != nil {
		return fmt.Errorf("sync slot: %w", err)
	}
	hs, err := p.wire.MarshalBinary()
	if err != nil {
		return err
	}
	p.pd.Offset, p.pd.HashState = p.off, hs
	if err := p.st.save(); err != nil {
		return err
	}
	p.lastCk = p.off
	return nil
}

// SetValidator implements download.ValidatorSink: the validator is saved
// with the next checkpoint, so that a resume after a crash sends If-Range.
func (p *pipeline) SetValidator(v string) error {
	p.pd.Validator = v
	return nil
}

// Restart implements download.Sink: the server will send everything again.
func (p *pipeline) Restart() error { return p.reset() }

// close ends the decoder, if any, and returns its error.
func (p *pipeline) close() error {
	if p.pw == nil {
		return nil
	}
	p.pw.Close()
	err := <-p.done
	p.pw, p.done = nil, nil
	return err
}

// verify checks every byte: the wire bytes against the TUF target and, for
// compressed targets, the image against the signed uncompressed digest.
func (p *pipeline) verify() error {
	if err := p.wire.Verify(); err != nil {
		return fmt.Errorf("target %s: %w", p.t.Path, err)
	}
	if p.img != nil {
		if err := p.img.Verify(); err != nil {
			return fmt.Errorf("target %s, decompressed: %w", p.t.Path, err)
		}
	}
	return nil
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// relativeURL returns target's path relative to base, so that it can be
// fetched from a mirror.
func relativeURL(base, target string) string {
	b, err1 := url.Parse(base)
	t, err2 := url.Parse(target)
	if err1 != nil || err2 != nil {
		return target
	}
	return strings.TrimPrefix(t.Path, strings.TrimSuffix(b.Path, "/")+"/")
}

func joinURL(base, rel string) string {
	return strings.TrimSuffix(base, "/") + "/" + strings.TrimPrefix(rel, "/")
}
