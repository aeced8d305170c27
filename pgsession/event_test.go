package pgsession_test

import (
	"encoding/json"
	"testing"

	"github.com/authsidecar/authsidecar/pgsession"
)

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		payload string
		want    pgsession.Event
		ok      bool
	}{
		{`{"tokenHash":"ab"}`, pgsession.Event{TokenHash: "ab"}, true},
		{`{"userId":"u"}`, pgsession.Event{UserID: "u"}, true},
		{`{"tokenHash":"ab","extra":1}`, pgsession.Event{TokenHash: "ab"}, true}, // a newer trigger may add fields
		{`{}`, pgsession.Event{}, false},
		{`{"tokenHash":""}`, pgsession.Event{}, false},
		{`{"tokenHash":5}`, pgsession.Event{}, false},
		{`null`, pgsession.Event{}, false},
		{`not json`, pgsession.Event{}, false},
		{``, pgsession.Event{}, false},
	} {
		got, err := pgsession.ParseEvent(tc.payload)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseEvent(%q) = %+v, %v; want %+v, ok %v", tc.payload, got, err, tc.want, tc.ok)
		}
	}
}

// FuzzParseEvent: a NOTIFY payload is bytes anyone allowed to notify on the channel chose.
// Parsing never panics; an accepted payload names a token hash or a user and is valid JSON;
// and every event a trigger could send parses back to itself.
func FuzzParseEvent(f *testing.F) {
	f.Add(`{"tokenHash":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}`, "", "")
	f.Add(`{"userId":"7c1e5a52-3f1b-4d7e-9a51-0d6c2f1f6a01"}`, "h", "u")
	f.Add(`{"tokenHash":"a","userId":"b"}`, "", "u")
	f.Add(`{"tokenHash":null}`, "\x00", "")
	f.Fuzz(func(t *testing.T, payload, hash, user string) {
		ev, err := pgsession.ParseEvent(payload)
		if err == nil {
			if ev.TokenHash == "" && ev.UserID == "" {
				t.Fatalf("accepted %q naming nothing", payload)
			}
			if !json.Valid([]byte(payload)) {
				t.Fatalf("accepted invalid JSON %q", payload)
			}
		} else if ev != (pgsession.Event{}) {
			t.Fatalf("rejected %q but returned %+v", payload, ev)
		}
		sent := pgsession.Event{TokenHash: hash, UserID: user}
		b, err := json.Marshal(sent)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgsession.ParseEvent(string(b))
		switch {
		case hash == "" && user == "":
			if err == nil {
				t.Fatalf("accepted an event naming nothing: %s", b)
			}
		case err != nil || got != jsonRoundTrip(sent):
			t.Fatalf("ParseEvent(%s) = %+v, %v; want %+v", b, got, err, sent)
		}
	})
}

// jsonRoundTrip is what encoding/json makes of ev's strings: invalid UTF-8 becomes U+FFFD,
// as it would in the trigger's json_build_object too.
func jsonRoundTrip(ev pgsession.Event) pgsession.Event {
	b, _ := json.Marshal(ev)
	var out pgsession.Event
	_ = json.Unmarshal(b, &out)
	return out
}
