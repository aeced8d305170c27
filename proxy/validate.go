package proxy

import (
	"github.com/authsidecar/authsidecar/pgsession"
)

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
