package authcache

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/authsidecar/authsidecar/pgsession"
)

// fuzzTime is a timestamp as Postgres stores it (microseconds, read back in UTC), or the
// zero time (NULL) for 0.
func fuzzTime(micros int64) time.Time {
	if micros == 0 {
		return time.Time{}
	}
	return time.UnixMicro(micros).UTC()
}

// FuzzSessionRoundTrip: decode∘encode is the identity on every session Postgres can return,
// whatever its strings (UUIDs or not, any bytes) and timestamps (any microsecond, or NULL).
//
// One timestamp is left out: exactly 1970-01-01T00:00:00Z is encoded like NULL and read
// back as NULL (unixMicro), a known limit of the codec rather than a case the fuzzer should
// keep rediscovering.
func FuzzSessionRoundTrip(f *testing.F) {
	f.Add("22222222-2222-4222-a222-2222222222ab", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "jose@example.com",
		"José", "Müller", "jm", "https://a.example/x.png", "203.0.113.9", "Mozilla/5.0",
		int64(1893456000000000), int64(1764590400123456), int64(0))
	f.Add("22222222-2222-4222-A222-2222222222AB", "not-a-uuid-but-36-characters-long-xx", "", "", "", "", "", "", "",
		int64(-1), int64(1), int64(-62135596800000000))
	f.Add("", "", "\x00", "\xff\xfe", "%", "\n", "", "::1", strings.Repeat("u", 300), int64(1<<62), int64(-1<<62), int64(42))
	f.Fuzz(func(t *testing.T, id, userID, email, first, last, username, avatar, ip, ua string, expires, created, active int64) {
		if expires == 0 && created == 0 && active == 0 {
			expires = 1 // the value must carry a time to be a session at all; 0 only means NULL
		}
		want := pgsession.Session{TokenHash: "h", ID: id, UserID: userID, Email: email, FirstName: first,
			LastName: last, Username: username, AvatarURL: avatar, IPAddress: ip, UserAgent: ua,
			ExpiresAt: fuzzTime(expires), CreatedAt: fuzzTime(created), LastActivityAt: fuzzTime(active)}
		b := encodeSession(want)
		got, err := decodeSession("h", b)
		if err != nil || got != want {
			t.Fatalf("decode(encode(s)) = %+v, %v\nwant %+v", got, err, want)
		}
		// A truncated value is a miss: no proper prefix decodes (the last 16 of a long one).
		for i := max(0, len(b)-16); i < len(b); i++ {
			if _, err := decodeSession("h", b[:i]); err == nil {
				t.Fatalf("the %d-byte prefix of a %d-byte value decoded", i, len(b))
			}
		}
	})
}

// FuzzDecodePeerMessage: an eviction message is bytes another process published. Decoding
// never panics; an accepted message names exactly one of a well-formed token hash or a
// bounded user id (never a raw token, whatever fields it carries) and re-encodes to itself;
// every eviction a replica can publish is read back unchanged.
func FuzzDecodePeerMessage(f *testing.F) {
	hash := HashToken("authsidecar-demo-token")
	f.Add(`{"tokenHash":"`+hash+`"}`, hash, "")
	f.Add(`{"userId":"7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01"}`, "", "7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01")
	f.Add(`{"token":"authsidecar-demo-token"}`, "", "u")
	f.Add(`{"tokenHash":"`+strings.ToUpper(hash)+`","userId":"u"}`, "ABC", "")
	f.Add(`{"tokenHash":"`+hash+`"}{"userId":"u"}`, hash, strings.Repeat("u", 129))
	f.Add(`{"feed":"standby-free"}`, "", "")
	f.Add(`{"feed":"standby-free","tokenHash":"`+hash+`"}`, "", "")
	f.Fuzz(func(t *testing.T, payload, tokenHash, userID string) {
		ev, feed, err := decodePeerMessage(payload)
		if err == nil && feed == "" {
			if (ev.tokenHash == "") == (ev.userID == "") {
				t.Fatalf("accepted %q naming %+v, want exactly one of a hash and a user", payload, ev)
			}
			if ev.tokenHash != "" && !isTokenHash(ev.tokenHash) {
				t.Fatalf("accepted %q with a malformed hash %q", payload, ev.tokenHash)
			}
			if len(ev.userID) > maxUserIDLen {
				t.Fatalf("accepted %q with a %d-byte user id", payload, len(ev.userID))
			}
			if again, _, err := decodePeerMessage(string(encodePeerMessage(ev))); err != nil || again != ev {
				t.Fatalf("re-encoding %+v read back %+v, %v", ev, again, err)
			}
		}
		// Every user id a replica evicts came out of JSON (the admin API, a NOTIFY payload)
		// or a uuid column, so it is valid UTF-8; JSON would replace invalid bytes.
		if !utf8.ValidString(userID) {
			return
		}
		sent, err := Target{TokenHash: tokenHash, UserID: userID}.eviction()
		if err != nil {
			return // not an eviction any replica publishes
		}
		b := encodePeerMessage(sent)
		if !json.Valid(b) {
			t.Fatalf("published %q is not JSON", b)
		}
		if got, _, err := decodePeerMessage(string(b)); err != nil || got != sent {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", sent, got, err)
		}
	})
}
