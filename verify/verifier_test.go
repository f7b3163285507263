package verify

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
)

func sums(data []byte) map[string][]byte {
	s256 := sha256.Sum256(data)
	s512 := sha512.Sum512(data)
	s384 := sha512.Sum384(data)
	return map[string][]byte{SHA256: s256[:], SHA512: s512[:], SHA384: s384[:]}
}

func only(m map[string][]byte, algs ...string) map[string][]byte {
	out := map[string][]byte{}
	for _, a := range algs {
		out[a] = m[a]
	}
	return out
}

func TestVerifier(t *testing.T) {
	data := []byte("the quick brown fox jumps over the lazy dog")
	other := bytes.ToUpper(data)
	good := sums(data)
	tests := []struct {
		name    string
		length  int64
		hashes  map[string][]byte
		write   [][]byte
		wantErr string // "" means Verify succeeds
	}{
		{"sha256", int64(len(data)), only(good, SHA256), [][]byte{data}, ""},
		{"all algorithms", int64(len(data)), good, [][]byte{data[:5], data[5:20], nil, data[20:]}, ""},
		{"sha512 only", int64(len(data)), only(good, SHA512), [][]byte{data}, ""},
		{"empty stream", 0, only(sums(nil), SHA256), nil, ""},
		{"short", int64(len(data)), only(good, SHA256), [][]byte{data[:10]}, "expected 43 bytes, got 10"},
		{"long", int64(len(data)) - 1, only(good, SHA256), [][]byte{data}, "longer than the expected 42 bytes"},
		{"wrong bytes", int64(len(data)), only(good, SHA256), [][]byte{other}, "sha256 mismatch"},
		{"one hash of two wrong", int64(len(data)), map[string][]byte{SHA256: good[SHA256], SHA512: sums(other)[SHA512]}, [][]byte{data}, "sha512 mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.length, tt.hashes)
			if err != nil {
				t.Fatal(err)
			}
			var werr error
			for _, p := range tt.write {
				if _, werr = v.Write(p); werr != nil {
					break
				}
			}
			err = v.Verify()
			if tt.wantErr == "" {
				if werr != nil || err != nil {
					t.Fatalf("Write: %v, Verify: %v; want success", werr, err)
				}
				return
			}
			if !errors.Is(err, ErrVerification) {
				t.Fatalf("Verify = %v, want ErrVerification", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Verify = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestVerifierWriteStopsAtLength(t *testing.T) {
	v, err := NewVerifier(4, only(sums([]byte("abcd")), SHA256))
	if err != nil {
		t.Fatal(err)
	}
	n, err := v.Write([]byte("abcdef"))
	if n != 4 || !errors.Is(err, ErrVerification) {
		t.Fatalf("Write = %d, %v; want 4, ErrVerification", n, err)
	}
	if got, want := v.Written(), int64(4); got != want {
		t.Errorf("Written = %d, want %d", got, want)
	}
	if n, err := v.Write([]byte("x")); n != 0 || err == nil {
		t.Errorf("Write after overflow = %d, %v; want 0 and an error", n, err)
	}
	if err := v.Verify(); !errors.Is(err, ErrVerification) {
		t.Errorf("Verify after overflow = %v, want ErrVerification", err)
	}
	if _, err := v.MarshalBinary(); err == nil {
		t.Error("MarshalBinary of a failed verifier succeeded")
	}
}

func TestNewVerifierRefuses(t *testing.T) {
	good := sums([]byte("x"))
	tests := []struct {
		name   string
		length int64
		hashes map[string][]byte
	}{
		{"negative length", -1, only(good, SHA256)},
		{"no hashes", 1, nil},
		{"unknown algorithm", 1, map[string][]byte{"md5": make([]byte, 16)}},
		{"unknown among known", 1, map[string][]byte{SHA256: good[SHA256], "blake2b": make([]byte, 32)}},
		{"short digest", 1, map[string][]byte{SHA256: good[SHA256][:31]}},
		{"sha512 digest under sha256", 1, map[string][]byte{SHA256: good[SHA512]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewVerifier(tt.length, tt.hashes)
			if !errors.Is(err, ErrVerification) {
				t.Fatalf("NewVerifier = %v, %v; want ErrVerification", v, err)
			}
		})
	}
}

func TestNewDigestVerifier(t *testing.T) {
	data := []byte("uncompressed image")
	s := sha256.Sum256(data)
	v, err := NewDigestVerifier(Digest{Length: int64(len(data)), SHA256: hex.EncodeToString(s[:])})
	if err != nil {
		t.Fatal(err)
	}
	v.Write(data)
	if err := v.Verify(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDigestVerifier(Digest{Length: 1, SHA256: "zz"}); !errors.Is(err, ErrVerification) {
		t.Errorf("NewDigestVerifier(bad hex) = %v, want ErrVerification", err)
	}
}

func TestVerifierCheckpoint(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	hashes := sums(data)
	for _, cut := range []int{0, 1, 63, 64, 65, 8000, len(data)} {
		v, err := NewVerifier(int64(len(data)), hashes)
		if err != nil {
			t.Fatal(err)
		}
		v.Write(data[:cut])
		cp, err := v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		// Continue in a fresh verifier, as after a restart.
		r, err := NewVerifier(int64(len(data)), hashes)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.UnmarshalBinary(cp); err != nil {
			t.Fatalf("cut %d: UnmarshalBinary: %v", cut, err)
		}
		if got, want := r.Written(), int64(cut); got != want {
			t.Errorf("cut %d: Written = %d, want %d", cut, got, want)
		}
		r.Write(data[cut:])
		if err := r.Verify(); err != nil {
			t.Errorf("cut %d: Verify after resume: %v", cut, err)
		}
		// The original keeps working after being checkpointed.
		v.Write(data[cut:])
		if err := v.Verify(); err != nil {
			t.Errorf("cut %d: Verify of original: %v", cut, err)
		}
	}
}

func TestVerifierCheckpointRefused(t *testing.T) {
	data := []byte("some image bytes")
	hashes := sums(data)
	v, _ := NewVerifier(int64(len(data)), only(hashes, SHA256, SHA512))
	v.Write(data[:7])
	cp, err := v.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	other := sums([]byte("other image bytes"))
	tests := []struct {
		name   string
		length int64
		hashes map[string][]byte
		cp     []byte
	}{
		{"empty", int64(len(data)), only(hashes, SHA256, SHA512), nil},
		{"garbage", int64(len(data)), only(hashes, SHA256, SHA512), []byte("not a checkpoint at all")},
		{"truncated", int64(len(data)), only(hashes, SHA256, SHA512), cp[:len(cp)-1]},
		{"trailing", int64(len(data)), only(hashes, SHA256, SHA512), append(bytes.Clone(cp), 0)},
		{"other length", int64(len(data)) + 1, only(hashes, SHA256, SHA512), cp},
		{"other digest", int64(len(data)), only(other, SHA256, SHA512), cp},
		{"fewer hashes", int64(len(data)), only(hashes, SHA256), cp},
		{"other hashes", int64(len(data)), only(hashes, SHA256, SHA384), cp},
		{"bit flip", int64(len(data)), only(hashes, SHA256, SHA512), flip(cp, 14)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewVerifier(tt.length, tt.hashes)
			if err != nil {
				t.Fatal(err)
			}
			r.Write([]byte("x"))
			if err := r.UnmarshalBinary(tt.cp); err == nil {
				t.Fatal("UnmarshalBinary succeeded, want an error")
			}
			if got, want := r.Written(), int64(1); got != want {
				t.Errorf("Written after refused checkpoint = %d, want %d (unchanged)", got, want)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x10
	return b
}

func FuzzVerifier(f *testing.F) {
	f.Add([]byte("hello, world"), uint16(5), []byte(nil))
	f.Add([]byte(""), uint16(0), []byte("swbv1"))
	f.Add(bytes.Repeat([]byte{0xaa}, 200), uint16(64), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte, cut uint16, junk []byte) {
		c := int(cut)
		if c > len(data) {
			c = len(data)
		}
		hashes := sums(data)
		v, err := NewVerifier(int64(len(data)), hashes)
		if err != nil {
			t.Fatal(err)
		}
		v.Write(data[:c])
		cp, err := v.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		// Arbitrary checkpoints never panic and never corrupt a verifier.
		r, _ := NewVerifier(int64(len(data)), hashes)
		if err := r.UnmarshalBinary(junk); err == nil {
			r, _ = NewVerifier(int64(len(data)), hashes)
		}
		if err := r.UnmarshalBinary(cp); err != nil {
			t.Fatalf("UnmarshalBinary of own checkpoint: %v", err)
		}
		r.Write(data[c:])
		if err := r.Verify(); err != nil {
			t.Fatalf("resumed Verify: %v", err)
		}
		// Any change to the bytes is caught.
		if len(data) > 0 {
			bad := bytes.Clone(data)
			bad[c%len(bad)] ^= 1
			w, _ := NewVerifier(int64(len(data)), hashes)
			w.Write(bad)
			if err := w.Verify(); !errors.Is(err, ErrVerification) {
				t.Fatalf("Verify of altered bytes = %v, want ErrVerification", err)
			}
		}
	})
}

func BenchmarkVerifier(b *testing.B) {
	buf := bytes.Repeat([]byte{0x5a}, 64<<10)
	for _, algs := range [][]string{{SHA256}, {SHA512}, {SHA256, SHA512}} {
		b.Run(strings.Join(algs, "+"), func(b *testing.B) {
			hashes := only(sums(nil), algs...)
			b.SetBytes(int64(len(buf)))
			v, err := NewVerifier(math.MaxInt64, hashes) // never overflows
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := v.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
