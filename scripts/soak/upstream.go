package main

import (
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// upstreamIdle closes the sidecar's idle connections to the upstream soon, so a quiet
// reading finds none.
const upstreamIdle = 2 * time.Second

// newUpstream is the app behind the sidecar: "/" answers a short body, "/stream" is an
// event stream with one event a second until the client leaves, and "/ws" accepts a
// WebSocket handshake and then echoes every byte (the sidecar tunnels the bytes after
// the 101 without reading frames, so the echo needs none).
func newUpstream() (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/stream", serveStream)
	mux.HandleFunc("/ws", serveEcho)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: upstreamIdle}
	go func() { _ = srv.Serve(ln) }() // ends at Close
	return srv, ln, nil
}

// serveStream sends "data: <n>" every second until the request ends.
func serveStream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		if _, err := fmt.Fprintf(w, "data: %d\n\n", n); err != nil || rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// serveEcho answers a WebSocket handshake with 101 and echoes the connection's bytes.
func serveEcho(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if r.Header.Get("Upgrade") != "websocket" || key == "" {
		http.Error(w, "websocket only", http.StatusBadRequest)
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	fmt.Fprintf(buf, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	if buf.Flush() != nil {
		return
	}
	_, _ = io.Copy(conn, buf) // until either side closes
}
