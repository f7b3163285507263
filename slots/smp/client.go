package smp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Transport carries whole SMP packets (header and body) between the
// gateway and one device. [UDP] and [Serial] implement it.
type Transport interface {
	// Send writes one packet.
	Send(ctx context.Context, packet []byte) error
	// Receive returns the next packet from the device. It returns when
	// ctx is done.
	Receive(ctx context.Context) ([]byte, error)
	// Close releases the transport.
	Close() error
}

// Reconnector is implemented by transports with session state that a
// device reset loses (a DTLS session). The [Client] calls Reconnect after
// a request went unanswered, before it tries again.
type Reconnector interface {
	Reconnect(ctx context.Context) error
}

// ErrNoResponse is returned when the device did not answer a request
// within the client's timeout and retries.
var ErrNoResponse = errors.New("smp: no response from device")

// Client sends SMP requests over a [Transport] and matches responses to
// them by sequence number. A request that goes unanswered is sent again,
// with the same sequence number, up to Retries times: every request this
// package sends is idempotent (an upload chunk sent twice is answered
// with the offset the device expects).
//
// A Client is safe for concurrent use; requests are serialised.
type Client struct {
	t       Transport
	timeout time.Duration
	retries int
	version uint8

	mu  sync.Mutex
	seq uint8
}

// ClientConfig tunes a [Client]. The zero value is sensible.
type ClientConfig struct {
	// Timeout bounds the wait for each attempt's response (default 2s).
	Timeout time.Duration
	// Retries is how many times an unanswered request is sent again
	// (default 3; negative: none).
	Retries int
	// LegacySMP sends SMP version 1 headers, for devices that predate SMP
	// version 2 (Zephyr before 3.3, Mynewt). Responses of either version
	// are understood.
	LegacySMP bool
}

// NewClient returns a client over t.
func NewClient(t Transport, cfg ClientConfig) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 3
	}
	c := &Client{t: t, timeout: cfg.Timeout, retries: max(cfg.Retries, 0), version: Version2}
	if cfg.LegacySMP {
		c.version = 0
	}
	return c
}

// Close closes the transport.
func (c *Client) Close() error { return c.t.Close() }

// Do sends one request and decodes the response into resp (nil: the
// response is only checked for an error). A nil req sends an empty map.
// An error the device reports is returned as a *DeviceError.
func (c *Client) Do(ctx context.Context, op Op, group Group, id uint8, req, resp any) error {
	return c.do(ctx, c.retries, op, group, id, req, resp)
}

func (c *Client) do(ctx context.Context, retries int, op Op, group Group, id uint8, req, resp any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	body := []byte{0xa0} // {}
	if req != nil {
		var err error
		if body, err = Marshal(req); err != nil {
			return fmt.Errorf("smp: encode request: %w", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	h := Header{Version: c.version, Op: op, Group: group, Seq: c.seq, ID: id}
	pkt, err := EncodePacket(h, body)
	if err != nil {
		return err
	}
	rbody, err := c.exchange(ctx, h, pkt, retries)
	if err != nil {
		return err
	}
	if resp == nil {
		resp = &Status{}
	}
	if err := Unmarshal(rbody, resp); err != nil {
		return fmt.Errorf("smp: group %d command %d: response: %w", group, id, err)
	}
	if s, ok := resp.(status); ok {
		return s.Err()
	}
	return nil
}

// exchange sends pkt and waits for its response, trying again after a
// timeout.
func (c *Client) exchange(ctx context.Context, h Header, pkt []byte, retries int) ([]byte, error) {
	var last error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			if r, ok := c.t.(Reconnector); ok {
				if err := r.Reconnect(ctx); err != nil {
					last = err
					if ctx.Err() != nil {
						return nil, ctx.Err()
					}
					continue
				}
			}
		}
		body, err := c.attempt(ctx, h, pkt)
		if err == nil {
			return body, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, errRetry) {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("%w: group %d command %d after %d attempts: %w", ErrNoResponse, h.Group, h.ID, retries+1, last)
}

// errRetry marks transport errors worth another attempt (a dropped link).
var errRetry = errors.New("smp: transport error")

func (c *Client) attempt(ctx context.Context, h Header, pkt []byte) ([]byte, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.t.Send(actx, pkt); err != nil {
		return nil, fmt.Errorf("%w: send: %w", errRetry, err)
	}
	for {
		p, err := c.t.Receive(actx)
		if err != nil {
			if actx.Err() != nil {
				return nil, actx.Err()
			}
			return nil, fmt.Errorf("%w: receive: %w", errRetry, err)
		}
		rh, body, err := DecodePacket(p)
		if err != nil {
			continue // noise on the line, or a stray datagram
		}
		if rh.Seq != h.Seq || rh.Group != h.Group || rh.ID != h.ID {
			continue // the late answer to an earlier attempt
		}
		if rh.Op == h.Op {
			continue // the request itself, echoed by a console
		}
		if rh.Op != h.Op+1 {
			return nil, fmt.Errorf("%w: response op %d to request op %d", ErrFrame, rh.Op, h.Op)
		}
		return body, nil
	}
}
