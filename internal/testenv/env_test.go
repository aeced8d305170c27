package testenv

import (
	"strings"
	"testing"
)

func TestResolveEnvNeverSkipsSilently(t *testing.T) {
	const set = "redis://10.0.0.1:6379/3"
	up, down := func() bool { return true }, func() bool { return false }
	for _, tc := range []struct {
		name    string
		env     map[string]string
		answers func() bool
		want    string // "" when it must fail
	}{
		{"variable set", map[string]string{EnvRedisURL: set}, down, set},
		{"variable set under CI", map[string]string{EnvRedisURL: set, EnvCI: "true"}, down, set},
		{"unset, local server answers", nil, up, LocalRedisURL},
		{"unset, nothing answers", nil, down, ""},
		{"unset under CI, even with a local server", map[string]string{EnvCI: "true"}, up, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveEnv(EnvRedisURL, func(k string) string { return tc.env[k] }, tc.answers)
			if got != tc.want || (err == nil) != (tc.want != "") {
				t.Fatalf("resolveEnv = %q, %v; want %q", got, err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "scripts/test.sh")) {
				t.Errorf("failure %q is not one line naming scripts/test.sh", err)
			}
		})
	}
}
