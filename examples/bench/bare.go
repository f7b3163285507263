package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"
)

// The bare pipeline is a network install stripped to the physical stages'
// work: GET, write, fsync and SHA-256, overlapped as the updater overlaps
// them, with the same bounds (4 buffers of 256 KiB, an fsync every 4 MiB),
// and nothing else: no TUF, no checkpoints, no resume, no events. It is the
// yardstick of what this machine allows a pipeline of these stages: the
// install can only approach it, and where it stays below a goal set
// against the stages alone, so must the install.
const (
	bareBuffers   = 4
	bareBufSize   = 256 << 10
	bareSyncEvery = 4 << 20
)

// barePipeline is the role "bare": the GET of url copied into a new file
// at out through the bare pipeline; with hashing, the bytes are also
// hashed and must match wantHex.
func barePipeline(url, out, wantHex string, hashing bool) error {
	start, cpu := time.Now(), markCPU()
	body, f, err := getInto(url, out)
	if err != nil {
		return err
	}
	defer body.Close()
	defer f.Close()
	sum, err := bareCopy(body, f, hashing)
	if err != nil {
		return err
	}
	if hashing && sum != wantHex {
		return fmt.Errorf("bare pipeline sha256 %s, want %s", sum, wantHex)
	}
	self, machine := cpu.since()
	return json.NewEncoder(os.Stdout).Encode(report{Seconds: time.Since(start).Seconds(), HWMKiB: vmHWM(), CPUSeconds: self, MachineSeconds: machine})
}

// bareCopy reads body into its buffers in turn. The receiving goroutine
// (this one) writes each full buffer at its offset and hands it to the
// hashing goroutine, which hands it back once hashed (without hashing,
// the buffer is reused at once); a syncing goroutine fsyncs the file every
// bareSyncEvery bytes, and a request made while one already waits is
// dropped (see request). It returns the SHA-256 in hex ("" without
// hashing) after a last fsync.
func bareCopy(body io.Reader, f *os.File, hashing bool) (string, error) {
	free := make(chan []byte, bareBuffers)
	for range bareBuffers {
		free <- make([]byte, bareBufSize)
	}
	toHash := make(chan []byte, bareBuffers)
	h := sha256.New()
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range toHash {
			h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	sy := startBareSyncer(f)
	err := bareReceive(body, f, free, toHash, sy, hashing)
	close(toHash)
	<-hashed
	if serr := sy.stop(); err == nil {
		err = serr
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil || !hashing {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// bareReceive is bareCopy's receiving loop.
func bareReceive(body io.Reader, f *os.File, free, toHash chan []byte, sy *bareSyncer, hashing bool) error {
	var off int64
	for {
		b := <-free
		n, rerr := io.ReadFull(body, b)
		if _, err := f.WriteAt(b[:n], off); err != nil {
			return err
		}
		if (off+int64(n))/bareSyncEvery != off/bareSyncEvery {
			sy.request()
		}
		off += int64(n)
		if hashing {
			toHash <- b[:n]
		} else {
			free <- b
		}
		switch rerr {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return nil
		default:
			return rerr
		}
	}
}

// bareSyncer fsyncs a file on a goroutine of its own when asked.
type bareSyncer struct {
	req  chan struct{}
	done chan error // the first fsync error, once stopped
}

func startBareSyncer(f *os.File) *bareSyncer {
	s := &bareSyncer{req: make(chan struct{}, 1), done: make(chan error, 1)}
	go func() {
		var first error
		for range s.req {
			if err := f.Sync(); err != nil && first == nil {
				first = err
			}
		}
		s.done <- first
	}()
	return s
}

// request asks for an fsync; it does nothing when one is already asked
// for and not begun.
func (s *bareSyncer) request() {
	select {
	case s.req <- struct{}{}:
	default:
	}
}

// stop waits for the fsyncs asked for and returns the first error.
func (s *bareSyncer) stop() error {
	close(s.req)
	return <-s.done
}
