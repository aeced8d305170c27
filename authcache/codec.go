package authcache

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

// codecVersion leads every cached value, so a future layout can be told apart and a value
// written by an older replica is treated as a miss rather than misread.
const codecVersion = 1

var errCorrupt = errors.New("authcache: corrupt cached session")

// encodeSession packs a session into one compact Redis string: a version byte, then each
// field as a uvarint length and its bytes, and the timestamps as varint Unix microseconds.
// A 12-field HASH loses Redis's listpack encoding once one value passes 64 bytes (a
// browser user agent does), which triples its memory; one string stays under 512 bytes.
// The token hash is the key and is not repeated in the value.
func encodeSession(s pgsession.Session) []byte {
	strs := [...]string{s.ID, s.UserID, s.Email, s.FirstName, s.LastName, s.Username,
		s.AvatarURL, s.IPAddress, s.UserAgent}
	n := 1 + 3*binary.MaxVarintLen64
	for _, v := range strs {
		n += binary.MaxVarintLen64 + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, codecVersion)
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
	s := pgsession.Session{TokenHash: tokenHash}
	for _, p := range [...]*string{&s.ID, &s.UserID, &s.Email, &s.FirstName, &s.LastName,
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
