package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
)

// Range returns a reader of bytes [off, off+n) of the file behind urls
// (mirrors of the same file, tried in order), for readers that consume a
// file piecewise, such as the chunks of a delta. The bytes flow under the
// rules of [Client.Fetch]: stall and low-speed limits, Pause, the rate
// limit, retries (a range cut mid-way resumes where it stopped) and
// mirrors. Each request asks for exactly the bytes still missing; a
// server that answers with the whole file (200) or other bytes than asked
// fails with an error wrapping [ErrNoRange], after the other mirrors.
//
// Range returns once a server accepted the request (or with the error
// that ended every attempt); reading then streams the body, and errors
// that end the transfer later are returned by Read. Close ends the
// transfer at once and must be called. Memory is one copy buffer.
func (c *Client) Range(ctx context.Context, urls []string, off, n int64) (io.ReadCloser, error) {
	if len(urls) == 0 {
		return nil, errors.New("download: Range: no URL")
	}
	if off < 0 || n <= 0 {
		return nil, fmt.Errorf("download: Range of %d bytes at %d", n, off)
	}
	for _, u := range urls {
		if _, err := url.Parse(u); err != nil {
			return nil, fmt.Errorf("download: mirror URL: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	sink := &pipeSink{pw: pw, ready: make(chan struct{})}
	f := &fetchState{
		req: Request{URLs: urls, Length: n}, sink: sink,
		buf: make([]byte, min(int64(c.chunkSize()), n)), ranged: true, base: off,
	}
	r := &rangeReader{pr: pr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_, err := c.run(ctx, f)
		pw.CloseWithError(err) // nil: io.EOF after the last byte
		r.err = err
	}()
	select {
	case <-sink.ready:
		return r, nil
	case <-r.done:
		cancel()
		if r.err == nil { // cannot happen: bytes come after ready
			r.err = errors.New("download: Range: no response")
		}
		return nil, r.err
	}
}

// pipeSink hands a ranged transfer's bytes to the reader of Range through
// a pipe, and signals when the first response was accepted.
type pipeSink struct {
	pw    *io.PipeWriter
	ready chan struct{}
	once  sync.Once
}

func (p *pipeSink) Write(b []byte) (int, error) { return p.pw.Write(b) }

// Restart is never asked of a ranged transfer (a 200 is refused).
func (p *pipeSink) Restart() error { return errors.New("download: a byte range cannot restart") }

// SetValidator is called when a response is accepted, before its bytes.
func (p *pipeSink) SetValidator(string) error {
	p.once.Do(func() { close(p.ready) })
	return nil
}

// rangeReader is the body Range returns.
type rangeReader struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
	err    error // of the transfer, set before done is closed
}

func (r *rangeReader) Read(b []byte) (int, error) { return r.pr.Read(b) }

// Close ends the transfer and waits for it to stop.
func (r *rangeReader) Close() error {
	r.cancel()
	r.pr.Close()
	<-r.done
	return nil
}
