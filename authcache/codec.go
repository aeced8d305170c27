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
	if len(b) == 0 || b[0] != codecVersion {
		return pgsession.Session{}, errCorrupt
	}
	d := decoder{b: b[1:]}
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
	b   []byte
	err bool
}

func (d *decoder) str() string {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || uint64(len(d.b)-k) < n {
		d.err = true
		return ""
	}
	v := string(d.b[k : k+int(n)])
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
	h := hex.EncodeToString(d.b[:16])
	d.b = d.b[16:]
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (d *decoder) varint() int64 {
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[k:]
	return v
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
