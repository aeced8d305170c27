package authcache

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

// codecVersion leads every cached value, so a future layout can be told apart and a value
// written by an older replica is treated as a miss rather than misread.
const codecVersion = 2

var errCorrupt = errors.New("authcache: corrupt cached session")

// encodeSession packs a session into one compact Redis string: a version byte, the session
// and user ids (each a UUID as 16 raw bytes behind a 1 tag, or a 0 tag and a string), then
// each other field as a uvarint length and its bytes, and the timestamps as varint Unix
// microseconds.
// A 12-field HASH loses Redis's listpack encoding once one value passes 64 bytes (a
// browser user agent does), which triples its memory; one string stays under 512 bytes.
// The token hash is the key and is not repeated in the value.
func encodeSession(s pgsession.Session) []byte {
	strs := [...]string{s.Email, s.FirstName, s.LastName, s.Username,
		s.AvatarURL, s.IPAddress, s.UserAgent}
	n := 1 + 2*(1+binary.MaxVarintLen64+len(s.ID)) + 3*binary.MaxVarintLen64
	for _, v := range strs {
		n += binary.MaxVarintLen64 + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, codecVersion)
	b = appendID(b, s.ID)
	b = appendID(b, s.UserID)
	for _, v := range strs {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	for _, t := range [...]time.Time{s.ExpiresAt, s.LastActivityAt, s.CreatedAt} {
		b = binary.AppendVarint(b, unixMicro(t))
	}
	return b
}

// decodeSession is the inverse of encodeSession; tokenHash is the key the value was read from.
func decodeSession(tokenHash string, b []byte) (pgsession.Session, error) {
	return decodeSessionString(tokenHash, string(b))
}

// decodeSessionString decodes a value as Redis returned it. The session's strings are
// substrings of v, so a decode allocates only the two ids: on a Redis hit, which decodes on
// every request, that is 2 allocations instead of about 14.
func decodeSessionString(tokenHash, v string) (pgsession.Session, error) {
	if len(v) == 0 || v[0] != codecVersion {
		return pgsession.Session{}, errCorrupt
	}
	d := decoder{b: v[1:]}
	s := pgsession.Session{TokenHash: tokenHash, ID: d.id(), UserID: d.id()}
	for _, p := range [...]*string{&s.Email, &s.FirstName, &s.LastName,
		&s.Username, &s.AvatarURL, &s.IPAddress, &s.UserAgent} {
		*p = d.str()
	}
	for _, p := range [...]*time.Time{&s.ExpiresAt, &s.LastActivityAt, &s.CreatedAt} {
		*p = fromUnixMicro(d.varint())
	}
	if d.err || len(d.b) != 0 {
		return pgsession.Session{}, errCorrupt
	}
	return s, nil
}

type decoder struct {
	b   string
	err bool
}

// uvarint is binary.Uvarint over a string.
func uvarint(b string) (uint64, int) {
	var x uint64
	var s uint
	for i := 0; i < len(b); i++ {
		if i == binary.MaxVarintLen64 {
			return 0, -(i + 1) // overflow
		}
		c := b[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1) // overflow
			}
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

func (d *decoder) str() string {
	n, k := uvarint(d.b)
	if k <= 0 || uint64(len(d.b)-k) < n {
		d.err = true
		return ""
	}
	v := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	return v
}

// appendID stores a canonical lowercase UUID (what Postgres prints for a uuid column) as its
// 16 bytes; anything else as a string.
func appendID(b []byte, id string) []byte {
	var raw [16]byte
	if len(id) == 36 && id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-' {
		hexID := id[:8] + id[9:13] + id[14:18] + id[19:23] + id[24:]
		if _, err := hex.Decode(raw[:], []byte(hexID)); err == nil && hexID == strings.ToLower(hexID) {
			return append(append(b, 1), raw[:]...)
		}
	}
	b = append(b, 0)
	b = binary.AppendUvarint(b, uint64(len(id)))
	return append(b, id...)
}

func (d *decoder) id() string {
	if len(d.b) == 0 {
		d.err = true
		return ""
	}
	tag := d.b[0]
	d.b = d.b[1:]
	switch {
	case tag == 0:
		return d.str()
	case tag != 1 || len(d.b) < 16:
		d.err = true
		return ""
	}
	// The canonical form, 8-4-4-4-12 lowercase hex digits, built in one buffer.
	const digits = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i := range 16 {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		c := d.b[i]
		out[j], out[j+1] = digits[c>>4], digits[c&15]
		j += 2
	}
	d.b = d.b[16:]
	return string(out[:])
}

func (d *decoder) varint() int64 {
	ux, k := uvarint(d.b)
	if k <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[k:]
	x := int64(ux >> 1) // binary.Varint's zig-zag
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// unixMicro keeps the zero time (a NULL column) distinguishable from the Unix epoch.
func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUnixMicro(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}
