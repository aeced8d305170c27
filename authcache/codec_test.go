package authcache

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

func TestCodecRoundTrip(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	cases := []pgsession.Session{
		{TokenHash: "h", ID: "s", UserID: "u", Email: "e@x", FirstName: "José", LastName: "Müller",
			Username: "jm", AvatarURL: "https://a/b.png", ExpiresAt: now.Add(time.Hour),
			LastActivityAt: now, CreatedAt: now.Add(-time.Hour), IPAddress: "::1", UserAgent: "ua\x1f\n%"},
		{TokenHash: "h", ID: "s", UserID: "u", ExpiresAt: now}, // NULL columns stay NULL
		{TokenHash: "h", ID: "22222222-2222-4222-a222-2222222222ab", UserID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", ExpiresAt: now},
		{TokenHash: "h", ID: "22222222-2222-4222-A222-2222222222AB", UserID: "not-a-uuid-but-36-characters-long-xx", ExpiresAt: now},
	}
	for _, want := range cases {
		got, err := decodeSession("h", encodeSession(want))
		if err != nil || got != want {
			t.Fatalf("round trip:\n got %+v, %v\nwant %+v", got, err, want)
		}
	}
}

func TestCodecRejectsCorruptValues(t *testing.T) {
	good := encodeSession(pgsession.Session{ID: "s", UserID: "u", ExpiresAt: time.Now()})
	for _, b := range [][]byte{nil, {}, {9}, good[:len(good)-1], append(append([]byte{}, good...), 0), []byte("1")} {
		if _, err := decodeSession("h", b); err == nil {
			t.Fatalf("decode(%q) succeeded, want an error", b)
		}
	}
}

// FuzzDecodeSession: a cached value is bytes from Redis, which anyone with access to it can
// write. Decoding never panics, and whatever it accepts is a session the codec can write
// again and read back unchanged.
func FuzzDecodeSession(f *testing.F) {
	f.Add(encodeSession(pgsession.Session{ID: "s", UserID: "u", ExpiresAt: time.Now()}))
	f.Add(encodeSession(pgsession.Session{ID: "22222222-2222-4222-a222-2222222222ab", UserID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
		Email: "e@x", FirstName: "José", UserAgent: "ua", ExpiresAt: time.Now(), CreatedAt: time.Now()}))
	f.Add([]byte{codecVersion, 1})
	f.Add([]byte{codecVersion, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSession("h", b)
		if err != nil {
			if s != (pgsession.Session{}) {
				t.Fatalf("rejected %x but returned %+v", b, s)
			}
			return
		}
		if s.TokenHash != "h" {
			t.Fatalf("decoded session names hash %q, not the key it was read from", s.TokenHash)
		}
		if again, err := decodeSession("h", encodeSession(s)); err != nil || again != s {
			t.Fatalf("re-encoding a decoded value changed it: %+v vs %+v (%v)", s, again, err)
		}
	})
}

// uvarint must read exactly what binary.Uvarint reads, overflow and truncation included.
func TestUvarintMatchesBinary(t *testing.T) {
	cases := [][]byte{nil, {0}, {1}, {0x7f}, {0x80}, {0x80, 1}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1},
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1}}
	for _, v := range []uint64{0, 1, 127, 128, 300, 1 << 32, 1<<63 + 5, ^uint64(0)} {
		cases = append(cases, binary.AppendUvarint(nil, v))
	}
	for _, b := range cases {
		wantV, wantN := binary.Uvarint(b)
		gotV, gotN := uvarint(string(b))
		if wantN <= 0 {
			wantV = 0
		}
		if gotV != wantV || (gotN > 0) != (wantN > 0) || (wantN > 0 && gotN != wantN) {
			t.Errorf("uvarint(%x) = %d, %d; binary.Uvarint = %d, %d", b, gotV, gotN, wantV, wantN)
		}
	}
}
