package proxy

import (
	"net/http"
	"time"

	"github.com/authsidecar/authsidecar/pgsession"
)

// setIdentity sets the identity headers of a validated session, omitting empty fields. The
// client's own identity headers were stripped before, so nothing of theirs survives.
// The values share one backing array (each header a one-element, full-capacity slice of
// it, so an append by a later handler copies): one allocation instead of seven per request.
func setIdentity(h http.Header, s pgsession.Session) {
	vals := make([]string, 0, 7)
	set := func(k, v string) {
		if v != "" {
			vals = append(vals, encodeHeaderValue(v))
			n := len(vals)
			h[k] = vals[n-1 : n : n]
		}
	}
	set("X-User-Id", s.UserID)
	set("X-User-Email", s.Email)
	set("X-User-Username", s.Username)
	set("X-User-First-Name", s.FirstName)
	set("X-User-Last-Name", s.LastName)
	set("X-Session-Id", s.ID)
	set("X-Session-Expires-At", formatTime(s.ExpiresAt))
}

// formatTime renders a timestamp as RFC 3339, UTC, whole seconds; the zero time (NULL) as "".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Second).Format(time.RFC3339)
}

// encodeHeaderValue returns v unchanged when every byte is printable ASCII and none is '%';
// otherwise it percent-encodes every byte outside printable ASCII, and '%', so the app's
// decodeURIComponent returns the original in both cases and no value can break a header.
func encodeHeaderValue(v string) string {
	if !needsEncoding(v) {
		return v
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(v)*3)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

func needsEncoding(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == '%' {
			return true
		}
	}
	return false
}

// validation is the JSON body of VALIDATE_PATH.
type validation struct {
	Session sessionJSON `json:"session"`
	User    userJSON    `json:"user"`
}

type sessionJSON struct {
	ID             string  `json:"id"`
	UserID         string  `json:"userId"`
	ExpiresAt      string  `json:"expiresAt"`
	LastActivityAt *string `json:"lastActivityAt"`
	CreatedAt      string  `json:"createdAt"`
	IPAddress      *string `json:"ipAddress"`
	UserAgent      *string `json:"userAgent"`
}

type userJSON struct {
	ID        string  `json:"id"`
	Email     string  `json:"email"`
	FirstName *string `json:"firstName"`
	LastName  *string `json:"lastName"`
	Username  *string `json:"username"`
	AvatarURL *string `json:"avatarUrl"`
}

func newValidation(s pgsession.Session) validation {
	return validation{
		Session: sessionJSON{
			ID: s.ID, UserID: s.UserID,
			ExpiresAt:      formatTime(s.ExpiresAt),
			LastActivityAt: nullable(formatTime(s.LastActivityAt)),
			CreatedAt:      formatTime(s.CreatedAt),
			IPAddress:      nullable(s.IPAddress),
			UserAgent:      nullable(s.UserAgent),
		},
		User: userJSON{
			ID: s.UserID, Email: s.Email,
			FirstName: nullable(s.FirstName), LastName: nullable(s.LastName),
			Username: nullable(s.Username), AvatarURL: nullable(s.AvatarURL),
		},
	}
}

// nullable renders an empty (NULL) column as JSON null.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
