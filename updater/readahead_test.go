package updater

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
)

// failAt is a ReaderAt over b that fails every read reaching past at.
type failAt struct {
	b  []byte
	at int64
}

var errDisk = errors.New("disk error")

func (f failAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.at {
		return 0, errDisk
	}
	return bytes.NewReader(f.b).ReadAt(p, off)
}

// TestReadAhead copies exactly the asked length, in order, across buffer
// boundaries; a short slot ends the copy quietly (the verifier counts the
// bytes), a read error is returned.
func TestReadAhead(t *testing.T) {
	data := image("ra", 3*readAheadSize+12345)
	n := int64(len(data))
	tests := []struct {
		name    string
		r       io.ReaderAt
		length  int64
		want    []byte
		wantErr error
	}{
		{"whole", bytes.NewReader(data), n, data, nil},
		{"prefix", bytes.NewReader(data), readAheadSize + 1, data[:readAheadSize+1], nil},
		{"empty", bytes.NewReader(data), 0, nil, nil},
		{"short slot", bytes.NewReader(data[:readAheadSize+7]), n, data[:readAheadSize+7], nil},
		{"read error", failAt{data, 2 * readAheadSize}, n, data[:2*readAheadSize], errDisk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := sha256.New()
			var got int64
			w := writerFunc(func(p []byte) (int, error) { got += int64(len(p)); return h.Write(p) })
			err := readAhead(context.Background(), w, tt.r, tt.length)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("readAhead: %v, want %v", err, tt.wantErr)
			}
			want := sha256.Sum256(tt.want)
			if got != int64(len(tt.want)) || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Errorf("copied %d bytes (sha256 %x), want %d (%x)", got, h.Sum(nil), len(tt.want), want)
			}
		})
	}
}

// TestReadAheadStops: the writer's error and a cancelled context stop the
// copy, and are returned.
func TestReadAheadStops(t *testing.T) {
	data := image("ra", 5*readAheadSize)
	errFull := errors.New("verifier full")
	w := writerFunc(func(p []byte) (int, error) { return 0, errFull })
	if err := readAhead(context.Background(), w, bytes.NewReader(data), int64(len(data))); !errors.Is(err, errFull) {
		t.Errorf("readAhead with a failing writer: %v, want %v", err, errFull)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := readAhead(ctx, io.Discard, bytes.NewReader(data), int64(len(data))); !errors.Is(err, context.Canceled) {
		t.Errorf("readAhead after cancel: %v, want %v", err, context.Canceled)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
