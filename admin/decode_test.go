package admin

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/authcache"
)

var targetFields = []string{"token", "tokenHash", "userId"}

// FuzzDecodeTarget: an /admin/invalidate body is bytes from whoever holds the admin token.
// Decoding never panics; it accepts exactly one JSON value, an object of the three known
// fields (encoding/json matches names case-insensitively) or null, and nothing after it;
// every object of known string fields is accepted; and a body written from a Target reads
// back as that Target.
func FuzzDecodeTarget(f *testing.F) {
	f.Add([]byte(`{"token":"authsidecar-demo-token"}`), "tok", "", "")
	f.Add([]byte(`{"tokenHash":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}`), "", "h", "")
	f.Add([]byte(`{"userId":"u"} `), "", "", "u")
	f.Add([]byte(`{"token":"x"}{"userId":"u"}`), "a", "b", "c")
	f.Add([]byte(`{"session":"x"}`), "", "", "")
	f.Add([]byte(`{"TOKEN":"x","token":null}`), "\xff", "", "")
	f.Add([]byte(`[{"token":"x"}]`), "", "", "")
	f.Add([]byte(`{"token":42}`), "", "", "")
	f.Add([]byte(`null`), "", "", "")
	f.Fuzz(func(t *testing.T, body []byte, token, hash, user string) {
		_, err := decodeTarget(bytes.NewReader(body))
		var value any
		validOne := json.Unmarshal(body, &value) == nil
		obj, isObject := value.(map[string]any)
		if err == nil {
			if !validOne || (!isObject && value != nil) {
				t.Fatalf("accepted %q: not one JSON object", body)
			}
			for k := range obj {
				if !knownField(k) {
					t.Fatalf("accepted %q with the unknown field %q", body, k)
				}
			}
		} else if validOne && isObject && exactStringFields(obj) {
			t.Fatalf("rejected %q, an object of known string fields: %v", body, err)
		}

		want := authcache.Target{Token: token, TokenHash: hash, UserID: user}
		b, _ := json.Marshal(want)
		got, err := decodeTarget(bytes.NewReader(b))
		if err != nil || got != viaJSON(want) {
			t.Fatalf("decodeTarget(%s) = %+v, %v; want %+v", b, got, err, want)
		}
	})
}

func knownField(k string) bool {
	for _, f := range targetFields {
		if strings.EqualFold(k, f) {
			return true
		}
	}
	return false
}

// exactStringFields reports an object whose keys are spelled exactly as the API documents
// them and whose values are all strings.
func exactStringFields(obj map[string]any) bool {
	for k, v := range obj {
		if _, ok := v.(string); !ok || (k != "token" && k != "tokenHash" && k != "userId") {
			return false
		}
	}
	return true
}

// viaJSON is what encoding/json makes of t's strings: invalid UTF-8 becomes U+FFFD.
func viaJSON(t authcache.Target) authcache.Target {
	b, _ := json.Marshal(t)
	var out authcache.Target
	_ = json.Unmarshal(b, &out)
	return out
}
