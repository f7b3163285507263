package health

import (
	"context"
	"fmt"
	"net"
)

// TCP returns a check that passes when a TCP connection to addr ("host:port")
// can be opened; the connection is closed at once. Its default name is
// "tcp:" + addr.
func TCP(addr string, opts ...Option) HealthCheck {
	b := newBase("tcp:"+addr, DefaultTimeout)
	applyOptions(&b, opts)
	return b.finish(func(ctx context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", addr, err)
		}
		return conn.Close()
	})
}
