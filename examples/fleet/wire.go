package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// The simulation counts what the server sends back in two ways: per
// request, from the parsed response (status line, header lines, body
// bytes read), which is attributed to a device and a check; and per
// connection, the decrypted bytes read from every TLS connection, the
// ground truth the per-request figures are checked against. TLS record
// and TCP/IP overhead are not counted by either.

// wireCounter is the per-connection total of decrypted bytes read.
type wireCounter struct{ n atomic.Int64 }

type countingConn struct {
	net.Conn
	c *wireCounter
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.c.n.Add(int64(n))
	return n, err
}

// newTransport returns the one http.Transport every simulated device
// shares (TLS sessions and keep-alive connections are pooled, as a fleet's
// devices would not share them: see the README), counting the bytes read
// from each connection into wc.
func newTransport(cfg *tls.Config, conns int, wc *wireCounter) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, cfg.Clone())
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return countingConn{tc, wc}, nil
		},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     5 * time.Minute,
		DisableCompression:  true,
	}
}

// usage is what one device's requests cost during one check or download.
type usage struct {
	requests int64
	bytes    int64 // response status line + headers + body
}

// countingRT attributes each response's size to a usage.
type countingRT struct {
	base http.RoundTripper
	u    *usage
}

func (c *countingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	c.u.requests++
	c.u.bytes += headerSize(resp)
	resp.Body = &countingBody{ReadCloser: resp.Body, u: c.u}
	return resp, nil
}

// headerSize is the size on the wire of an HTTP/1.1 response's status line
// and headers, as Go parsed them ("Name: value\r\n" each, then "\r\n").
func headerSize(resp *http.Response) int64 {
	n := len("HTTP/1.1 ") + len(resp.Status) + 2
	for k, vs := range resp.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	if len(resp.TransferEncoding) > 0 { // Go moves it out of Header
		n += len("Transfer-Encoding: chunked\r\n")
	}
	return int64(n + 2)
}

type countingBody struct {
	io.ReadCloser
	u *usage
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.u.bytes += int64(n)
	return n, err
}
