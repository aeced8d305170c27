package testenv

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Forwarder is a TCP proxy on a free 127.0.0.1 port that pipes every connection to a
// target. It simulates outages: Cut breaks connections like a crashed server, Pause
// stalls them like a partitioned network. All goroutines stop at cleanup.
type Forwarder struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu     sync.Mutex
	pairs  map[*pair]struct{}
	cut    bool
	gate   chan struct{} // closed while traffic flows; open while paused
	closed bool
}

// pair is one client connection and its upstream.
type pair struct {
	client, upstream net.Conn
	once             sync.Once
	done             chan struct{}
}

func (p *pair) close() {
	p.once.Do(func() {
		close(p.done)
		p.client.Close()
		if p.upstream != nil {
			p.upstream.Close()
		}
	})
}

// NewForwarder starts a forwarder to target (host:port).
func NewForwarder(tb testing.TB, target string) *Forwarder {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("forwarder listen: %v", err)
	}
	gate := make(chan struct{})
	close(gate)
	f := &Forwarder{target: target, ln: ln, pairs: map[*pair]struct{}{}, gate: gate}
	f.wg.Add(1)
	go f.accept()
	tb.Cleanup(f.close)
	return f
}

// Addr returns the forwarder's host:port.
func (f *Forwarder) Addr() string { return f.ln.Addr().String() }

// Cut closes every live connection and closes each new one on accept, until Restore.
func (f *Forwarder) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = true
	f.closePairs()
}

// Restore ends Cut and Pause: new connections are forwarded again.
func (f *Forwarder) Restore() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = false
	f.openGate()
}

// Pause stops moving bytes in both directions without closing anything, so peers see
// silence until their own timeouts fire. New connections are accepted but stall too.
func (f *Forwarder) Pause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.gate:
		f.gate = make(chan struct{})
	default: // already paused
	}
}

// Resume lets stalled bytes through again.
func (f *Forwarder) Resume() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.openGate()
}

func (f *Forwarder) openGate() {
	select {
	case <-f.gate:
	default:
		close(f.gate)
	}
}

func (f *Forwarder) closePairs() {
	for p := range f.pairs {
		p.close()
		delete(f.pairs, p)
	}
}

func (f *Forwarder) close() {
	f.mu.Lock()
	f.closed = true
	f.closePairs()
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}

func (f *Forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // listener closed at cleanup
		}
		f.mu.Lock()
		if f.cut || f.closed {
			f.mu.Unlock()
			c.Close()
			continue
		}
		p := &pair{client: c, done: make(chan struct{})}
		f.pairs[p] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go f.serve(p)
	}
}

func (f *Forwarder) serve(p *pair) {
	defer f.wg.Done()
	defer f.forget(p)
	up, err := net.DialTimeout("tcp", f.target, 5*time.Second)
	if err != nil {
		p.close()
		return
	}
	f.mu.Lock()
	select {
	case <-p.done: // cut while dialling
		f.mu.Unlock()
		up.Close()
		return
	default:
		p.upstream = up
	}
	f.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); f.pipe(p, up, p.client) }()
	go func() { defer wg.Done(); f.pipe(p, p.client, up) }()
	wg.Wait()
}

// pipe copies src to dst, holding each chunk while paused. Either side ending ends both.
func (f *Forwarder) pipe(p *pair, dst, src net.Conn) {
	defer p.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			gate := f.gate
			f.mu.Unlock()
			select {
			case <-gate:
			case <-p.done:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, reset or closed by Cut: the pair is done either way
		}
	}
}

func (f *Forwarder) forget(p *pair) {
	f.mu.Lock()
	delete(f.pairs, p)
	f.mu.Unlock()
}
