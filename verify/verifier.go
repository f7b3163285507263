package verify

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"slices"
	"strings"
)

// Hash algorithm names as they appear in TUF target metadata.
const (
	SHA256 = "sha256"
	SHA384 = "sha384"
	SHA512 = "sha512"
)

var hashNew = map[string]func() hash.Hash{
	SHA256: sha256.New,
	SHA384: sha512.New384,
	SHA512: sha512.New,
}

// SupportedHash reports whether alg names a hash algorithm [NewVerifier]
// accepts.
func SupportedHash(alg string) bool { _, ok := hashNew[alg]; return ok }

// Verifier checks a byte stream against a trusted length and set of hashes
// while it is written, with go-tuf's semantics
// (metadata.TargetFiles.VerifyLengthHashes): the length must match exactly
// and every listed hash must match. Unlike go-tuf it never holds the stream:
// memory use is a few hundred bytes whatever the length.
//
// A Verifier is not safe for concurrent use.
type Verifier struct {
	length  int64
	written int64
	algs    []string // sorted
	want    map[string][]byte
	hashes  map[string]hash.Hash
	err     error // sticky: set once more than length bytes arrived
}

// NewVerifier returns a Verifier for a stream of exactly length bytes whose
// digests are hashes (algorithm name to raw digest). It fails with an error
// wrapping [ErrVerification] when length is negative, hashes is empty, an
// algorithm is not supported (see [SupportedHash]) or a digest has the wrong
// size: such a target can never be verified.
func NewVerifier(length int64, hashes map[string][]byte) (*Verifier, error) {
	if length < 0 {
		return nil, fmt.Errorf("%w: negative length %d", ErrVerification, length)
	}
	if len(hashes) == 0 {
		return nil, fmt.Errorf("%w: no hashes to check", ErrVerification)
	}
	v := &Verifier{
		length: length,
		want:   make(map[string][]byte, len(hashes)),
		hashes: make(map[string]hash.Hash, len(hashes)),
	}
	for alg, d := range hashes {
		newHash, ok := hashNew[alg]
		if !ok {
			return nil, fmt.Errorf("%w: unsupported hash algorithm %q", ErrVerification, alg)
		}
		h := newHash()
		if len(d) != h.Size() {
			return nil, fmt.Errorf("%w: %s digest is %d bytes, want %d", ErrVerification, alg, len(d), h.Size())
		}
		v.algs = append(v.algs, alg)
		v.want[alg] = bytes.Clone(d)
		v.hashes[alg] = h
	}
	slices.Sort(v.algs)
	return v, nil
}

// NewDigestVerifier returns a Verifier for d, the uncompressed or patched
// image of a target (see [Custom].Uncompressed).
func NewDigestVerifier(d Digest) (*Verifier, error) {
	sum, err := hex.DecodeString(d.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("%w: digest sha256 %q is not a hex sha256", ErrVerification, d.SHA256)
	}
	return NewVerifier(d.Length, map[string][]byte{SHA256: sum})
}

// Write hashes p. It fails with an error wrapping [ErrVerification] as soon as
// the stream grows past the trusted length; the bytes up to the length are
// still hashed (n counts them), the rest are not, and the Verifier stays
// failed.
func (v *Verifier) Write(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n := len(p)
	if room := v.length - v.written; int64(n) > room {
		n = int(room)
		v.err = fmt.Errorf("%w: stream longer than the expected %d bytes", ErrVerification, v.length)
	}
	for _, alg := range v.algs {
		v.hashes[alg].Write(p[:n]) // hash.Hash.Write never fails
	}
	v.written += int64(n)
	return n, v.err
}

// Written returns the number of bytes hashed so far.
func (v *Verifier) Written() int64 { return v.written }

// Length returns the trusted length of the stream.
func (v *Verifier) Length() int64 { return v.length }

// Verify reports whether the bytes written so far are exactly the trusted
// stream: nil, or an error wrapping [ErrVerification] that names what
// differs (expected and actual length or digests). It does not change the
// Verifier: more bytes may be written and Verify called again.
func (v *Verifier) Verify() error {
	if v.err != nil {
		return v.err
	}
	if v.written != v.length {
		return fmt.Errorf("%w: length mismatch: expected %d bytes, got %d", ErrVerification, v.length, v.written)
	}
	var bad []string
	for _, alg := range v.algs {
		got := v.hashes[alg].Sum(nil)
		if subtle.ConstantTimeCompare(got, v.want[alg]) != 1 {
			bad = append(bad, fmt.Sprintf("%s mismatch: expected %x, got %x", alg, v.want[alg], got))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrVerification, strings.Join(bad, "; "))
	}
	return nil
}

// checkpoint layout, all integers big-endian:
//
//	magic "swbv1" | length u64 | written u64 | count u8 |
//	count × ( name u8-len | digest u8-len | state u16-len ) | crc32c u32
//
// The expected length and digests are part of the checkpoint so that one
// taken for another target is refused rather than silently continued; the
// CRC catches a checkpoint damaged on disk, which would otherwise resume at
// a wrong offset and fail verification, blocklisting a good release.
const checkpointMagic = "swbv1"

// MarshalBinary checkpoints the Verifier: the number of bytes written and
// the internal state of every hash, so that a download resumed after a
// restart continues hashing where it stopped without reading the written
// bytes again. A failed Verifier cannot be checkpointed.
func (v *Verifier) MarshalBinary() ([]byte, error) {
	if v.err != nil {
		return nil, v.err
	}
	b := []byte(checkpointMagic)
	b = binary.BigEndian.AppendUint64(b, uint64(v.length))
	b = binary.BigEndian.AppendUint64(b, uint64(v.written))
	b = append(b, byte(len(v.algs)))
	for _, alg := range v.algs {
		m, ok := v.hashes[alg].(encoding.BinaryMarshaler)
		if !ok {
			return nil, fmt.Errorf("verify: %s state cannot be saved", alg)
		}
		state, err := m.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("verify: save %s state: %w", alg, err)
		}
		if len(state) > 0xffff {
			return nil, fmt.Errorf("verify: %s state too large", alg)
		}
		b = append(b, byte(len(alg)))
		b = append(b, alg...)
		b = append(b, byte(len(v.want[alg])))
		b = append(b, v.want[alg]...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(state)))
		b = append(b, state...)
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCheckpoint is wrapped by every error about an unusable checkpoint.
var errCheckpoint = errors.New("verify: bad verifier checkpoint")

// UnmarshalBinary restores a checkpoint made by [Verifier.MarshalBinary]
// into a Verifier made by [NewVerifier] for the same target. A checkpoint
// that is malformed or was taken for another length or other digests is
// refused with an error, and v is left unchanged.
func (v *Verifier) UnmarshalBinary(data []byte) error {
	if len(data) < 4 {
		return fmt.Errorf("%w: truncated", errCheckpoint)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return fmt.Errorf("%w: checksum mismatch (damaged or not a checkpoint)", errCheckpoint)
	}
	r := checkpointReader{b: body}
	if string(r.next(len(checkpointMagic))) != checkpointMagic {
		return fmt.Errorf("%w: not a verifier checkpoint", errCheckpoint)
	}
	length, written := r.u64(), r.u64()
	count := int(r.u8())
	if r.short {
		return fmt.Errorf("%w: truncated", errCheckpoint)
	}
	if int64(length) != v.length {
		return fmt.Errorf("%w: taken for length %d, want %d", errCheckpoint, length, v.length)
	}
	if written > length {
		return fmt.Errorf("%w: %d bytes written of %d", errCheckpoint, written, length)
	}
	if count != len(v.algs) {
		return fmt.Errorf("%w: %d hashes, want %d", errCheckpoint, count, len(v.algs))
	}
	hashes := make(map[string]hash.Hash, count)
	for range count {
		alg := string(r.next(int(r.u8())))
		digest := r.next(int(r.u8()))
		state := r.next(int(r.u16()))
		if r.short {
			return fmt.Errorf("%w: truncated", errCheckpoint)
		}
		want, ok := v.want[alg]
		if !ok {
			return fmt.Errorf("%w: unexpected hash %q", errCheckpoint, alg)
		}
		if _, dup := hashes[alg]; dup {
			return fmt.Errorf("%w: hash %q twice", errCheckpoint, alg)
		}
		if !bytes.Equal(digest, want) {
			return fmt.Errorf("%w: taken for another %s digest", errCheckpoint, alg)
		}
		h := hashNew[alg]()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
			return fmt.Errorf("%w: %s state: %v", errCheckpoint, alg, err)
		}
		hashes[alg] = h
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errCheckpoint, len(r.b))
	}
	v.written = int64(written)
	v.hashes = hashes
	v.err = nil
	return nil
}

type checkpointReader struct {
	b     []byte
	short bool
}

func (r *checkpointReader) next(n int) []byte {
	if r.short || n > len(r.b) {
		r.short = true
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *checkpointReader) u8() uint8 {
	if p := r.next(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *checkpointReader) u16() uint16 {
	if p := r.next(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *checkpointReader) u64() uint64 {
	if p := r.next(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}
