package pgsession

import (
	"encoding/json"
	"errors"
)

// ParseEvent reads the payload of one change notification: the JSON the shipped trigger
// sends, with at least one of tokenHash and userId set. Anyone allowed to NOTIFY on the
// channel can send a payload, so it is parsed as untrusted bytes.
func ParseEvent(payload string) (Event, error) {
	var ev Event
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		return Event{}, err
	}
	if ev.TokenHash == "" && ev.UserID == "" {
		return Event{}, errors.New("neither tokenHash nor userId set")
	}
	return ev, nil
}
