package proxy

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
)

// errBadHandshake is a 101 from the app that does not answer the client's WebSocket key.
var errBadHandshake = errors.New("the app switched protocols with a Sec-WebSocket-Accept that does not match the client's Sec-WebSocket-Key")

// websocketGUID is RFC 6455's fixed suffix of the accept computation.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// checkHandshake verifies the app's 101 to a WebSocket upgrade: Sec-WebSocket-Accept must be
// base64(SHA-1(key + GUID)) of the key the client sent (RFC 6455 §4.2.2). A 101 that does
// not prove the app read this very request — a cache, a confused intermediary, an app that
// switches on anything — is not turned into a tunnel.
func checkHandshake(resp *http.Response) error {
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Request == nil ||
		!strings.EqualFold(resp.Request.Header.Get("Upgrade"), "websocket") {
		return nil
	}
	sum := sha1.Sum([]byte(resp.Request.Header.Get("Sec-WebSocket-Key") + websocketGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return errBadHandshake
	}
	return nil
}
