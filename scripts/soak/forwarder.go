package main

import (
	"io"
	"net"
	"sync"
)

// forwarder pipes TCP connections to a target (the shared Postgres) so the soak can cut
// the sidecar off from it without touching the server: cut closes every connection and
// refuses new ones until restore.
type forwarder struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

// newForwarder listens on a free 127.0.0.1 port and forwards to target.
func newForwarder(target string) (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &forwarder{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go f.accept()
	return f, nil
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

// setCut cuts (true) or restores (false) the path to the target.
func (f *forwarder) setCut(cut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = cut
	if cut {
		for c := range f.conns {
			c.Close()
		}
	}
}

// close stops accepting and closes every connection.
func (f *forwarder) close() {
	f.ln.Close()
	f.setCut(true)
}

func (f *forwarder) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // closed
		}
		go f.serve(c)
	}
}

// track registers c, or closes it and answers false while cut.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(f.conns, c)
	}
}

func (f *forwarder) serve(client net.Conn) {
	if !f.track(client) {
		return
	}
	up, err := net.Dial("tcp", f.target)
	if err != nil || !f.track(up) {
		if up != nil {
			up.Close()
		}
		f.untrack(client)
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src) // either side ending ends both
		done <- struct{}{}
	}
	go pipe(up, client)
	go pipe(client, up)
	<-done
	f.untrack(client, up)
	<-done
}
