package proxy

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestClipBoundsTheEncodedSize(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
		cut  bool
	}{
		{"/api/me", 1024, "/api/me", false},
		{strings.Repeat("a", 20), 20, strings.Repeat("a", 20), false},
		{strings.Repeat("a", 21), 20, strings.Repeat("a", 17) + "…", true},
		{strings.Repeat("é", 10), 20, strings.Repeat("é", 10), false},
		{strings.Repeat("é", 11), 20, strings.Repeat("é", 8) + "…", true},
		{strings.Repeat("\x01", 4), 20, strings.Repeat("\x01", 2) + "…", true},
		{strings.Repeat(`"`, 11), 20, strings.Repeat(`"`, 8) + "…", true},
	}
	for _, tc := range cases {
		got, cut := clip(tc.in, tc.max)
		if got != tc.want || cut != tc.cut {
			t.Errorf("clip(%q, %d) = %q, %v; want %q, %v", tc.in, tc.max, got, cut, tc.want, tc.cut)
		}
	}
}

func TestClipNeverExceedsItsBudget(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "é", "\u2028", "\ufffd", "\x00", "\x1f", `"`, `\`, "\xff", "€", "\n"}
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(300) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s, max := b.String(), 8+rng.IntN(200)
		got, cut := clip(s, max)
		if cost := encodedCost(got); cost > max || (cut && !strings.HasSuffix(got, ellipsis)) || (!cut && got != s) {
			t.Fatalf("clip(%q, %d) = %q (%d encoded bytes), cut %v", s, max, got, cost, cut)
		}
		if !cut && encodedCost(s) > max {
			t.Fatalf("clip(%q, %d) did not cut a value of %d encoded bytes", s, max, encodedCost(s))
		}
	}
}

// encodedCost is the size of s in zap's JSON encoding, measured with zap itself.
func encodedCost(s string) int {
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{})
	buf, _ := enc.EncodeEntry(zapcore.Entry{}, []zap.Field{zap.String("v", s)})
	return buf.Len() - len(`{"v":""}`+"\n")
}

func TestAccessLineStaysUnder4KB(t *testing.T) {
	var buf bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.InfoLevel)
	app := newUpstream(t, nil)
	srv, _ := newTestProxy(t, app, func(o *Options) { o.Logger = zap.New(core).Named("proxy") })
	huge := "/" + strings.Repeat("a\x01\"é", 64<<10)
	r := httptest.NewRequest(strings.Repeat("M", 200), "http://app/x", nil)
	r.URL.Path = huge
	r.Header.Set("User-Agent", strings.Repeat("\x02agent", 10000))
	r.Header.Set("X-Request-Id", strings.Repeat(`"`, 128))
	srv.Config.Handler.ServeHTTP(httptest.NewRecorder(), r)
	line := strings.TrimSuffix(buf.String(), "\n")
	if len(line) > 4096 || strings.Contains(line, "\n") {
		t.Fatalf("access line of %d bytes", len(line))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	if got["truncated"] != true || !strings.HasSuffix(got["path"].(string), ellipsis) || !strings.HasSuffix(got["userAgent"].(string), ellipsis) {
		t.Errorf("a cut line must say so: %v", got)
	}
	t.Logf("a request with a %d KB path and a %d KB user agent logs %d bytes", len(huge)>>10, 60, len(line))

	buf.Reset()
	resp := do(t, http.MethodGet, srv.URL+"/api/me", http.Header{"User-Agent": {"curl/8"}})
	resp.Body.Close()
	if strings.Contains(buf.String(), "truncated") || !strings.Contains(buf.String(), `"userAgent":"curl/8"`) {
		t.Errorf("ordinary line %s", buf.String())
	}
}
