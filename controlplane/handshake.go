package controlplane

import (
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/credentials"
)

// DefaultTLSHandshakeTimeout is how long an xDS connection may take to
// complete its TLS handshake (Config.TLSHandshakeTimeout).
const DefaultTLSHandshakeTimeout = 10 * time.Second

// handshakeLimit wraps the xDS server's TLS credentials: every handshake
// gets a deadline, and with slots at most cap(slots) server handshakes
// run at once. The bound is off by default (Config.TLSHandshakes):
// measured with 1,000 nodes connecting together over mutual TLS, 32 slots
// left the same live heap per node and ~10 KiB more fragmentation (`heap
// unused`) than handshaking them all at once (docs/PERFORMANCE.md).
//
// A connection waits at most timeout for a slot and then has timeout to
// finish its handshake (a deadline on the raw connection, shorter than
// gRPC's own 120 s connection timeout), so a client that stalls holds a
// slot no longer than timeout, and a node queued behind a flood of such
// clients gets a slot, or a clear error, within 2×timeout. The TLS
// configuration itself (client certificate verification, curves, cipher
// suites) is the wrapped credentials', untouched.
type handshakeLimit struct {
	credentials.TransportCredentials
	slots   chan struct{}
	timeout time.Duration
	// waits counts handshakes that gave up waiting for a slot; may be nil.
	waits interface{ Inc() }
}

// limitHandshakes wraps c; n <= 0 leaves the number of handshakes
// unbounded (each still with timeout), timeout <= 0 means
// DefaultTLSHandshakeTimeout.
func limitHandshakes(c credentials.TransportCredentials, n int, timeout time.Duration) *handshakeLimit {
	if timeout <= 0 {
		timeout = DefaultTLSHandshakeTimeout
	}
	h := &handshakeLimit{TransportCredentials: c, timeout: timeout}
	if n > 0 {
		h.slots = make(chan struct{}, n)
	}
	return h
}

// ServerHandshake waits for a slot, then runs the wrapped handshake with
// the deadline. On an error the raw connection is closed.
func (h *handshakeLimit) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if h.slots != nil {
		select {
		case h.slots <- struct{}{}:
		default:
			t := time.NewTimer(h.timeout)
			select {
			case h.slots <- struct{}{}:
				t.Stop()
			case <-t.C:
				raw.Close()
				if h.waits != nil {
					h.waits.Inc()
				}
				return nil, nil, fmt.Errorf("xds: TLS handshake from %s: no handshake slot free within %s (%d handshakes running, --xds-tls-handshakes)", raw.RemoteAddr(), h.timeout, cap(h.slots))
			}
		}
		defer func() { <-h.slots }()
	}
	if err := raw.SetDeadline(time.Now().Add(h.timeout)); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("xds: TLS handshake from %s: setting its deadline: %w", raw.RemoteAddr(), err)
	}
	conn, ai, err := h.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		raw.Close()
		return nil, nil, err
	}
	return conn, ai, nil
}

// Clone clones the wrapped credentials; the clone shares the slots.
func (h *handshakeLimit) Clone() credentials.TransportCredentials {
	c := *h
	c.TransportCredentials = h.TransportCredentials.Clone()
	return &c
}
