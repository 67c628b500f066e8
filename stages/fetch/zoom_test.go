package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"zoomarchive/shared/standins"
)

func TestMeetingPathDoubleEncodes(t *testing.T) {
	for uuid, want := range map[string]string{
		"4444AAAiAAAAAiAiAiiAii==": "/meetings/4444AAAiAAAAAiAiAiiAii==",
		"/ajXp+112QmS7gqgP3ep==":   "/meetings/%252FajXp+112QmS7gqgP3ep==",
		"ab//cd==":                 "/meetings/ab%252F%252Fcd==",
		"ab/cd":                    "/meetings/ab%2Fcd",
	} {
		if got := meetingPath(uuid); got != want {
			t.Errorf("%s: %s, want %s", uuid, got, want)
		}
	}
}

func TestHostList(t *testing.T) {
	h := hostList{"zoom.us", "*.zoom.us", "127.0.0.1"}
	for raw, ok := range map[string]bool{
		"https://zoom.us/rec/download/x":       true,
		"https://us06web.zoom.us/rec/x":        true,
		"https://ssrweb.zoom.us/file?x=1":      true,
		"https://zoom.us.evil.example/x":       false,
		"https://evilzoom.us/x":                false,
		"http://zoom.us/x":                     false, // credentials only over TLS
		"http://127.0.0.1:8080/x":              true,  // the stand-ins
		"https://example.com/x":                false,
		"https://ZOOM.US/x":                    true,
		"https://user@evil.example/@zoom.us/x": false,
	} {
		u, _ := url.Parse(raw)
		if err := h.allows(u); (err == nil) != ok {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

// Whatever a download URL (or a redirect) says, credentials go only over TLS (plain
// HTTP on loopback) to a host of the list: a name on it, or under a *. suffix at a
// dot.
func FuzzDownloadHost(f *testing.F) {
	for _, s := range []string{"https://zoom.us/rec/download/x", "https://us06web.zoom.us/rec/x", "https://evilzoom.us/x",
		"http://127.0.0.1:8080/x", "https://user@evil.example/@zoom.us/x", "https://zoom.us.evil.example/x",
		"https://ZOOM.us./x", "https://[::1]/x", "http://localhost/x", "https://xn--zoom-abc.us/x", "https://a.zoom.us:443@b.example/"} {
		f.Add(s)
	}
	h := hostList{"zoom.us", "*.zoom.us"}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil || h.allows(u) != nil {
			return
		}
		host := strings.ToLower(u.Hostname())
		onList := host == "zoom.us" || strings.HasSuffix(host, ".zoom.us")
		loopback := host == "localhost" || net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()
		if !onList || u.Scheme != "https" && !(u.Scheme == "http" && loopback) {
			t.Fatalf("%q allowed: scheme %q host %q", raw, u.Scheme, host)
		}
	})
}

// A meeting's path segment never splits into more segments, and reads back as its
// UUID: decoded once, as Zoom's router does; a UUID that starts with '/' or holds
// "//" decoded twice, as Zoom wants it, so that the router's decoding leaves it whole.
func FuzzMeetingPath(f *testing.F) {
	for _, s := range []string{"4444AAAiAAAAAiAiAiiAii==", "/ajXp+112QmS7gqgP3ep==", "ab//cd==", "ab/cd", "%2F", "a?b#c", "../x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uuid string) {
		p := meetingPath(uuid)
		seg, ok := strings.CutPrefix(p, "/meetings/")
		if !ok || strings.ContainsAny(seg, "/?#") {
			t.Fatalf("%q: path %q leaves its segment", uuid, p)
		}
		once, err := url.PathUnescape(seg)
		want := uuid
		if strings.HasPrefix(uuid, "/") || strings.Contains(uuid, "//") {
			want = url.PathEscape(uuid)
		}
		if err != nil || once != want {
			t.Fatalf("%q: path %q decodes once to %q (%v), want %q", uuid, p, once, err, want)
		}
	})
}

// Every answer of Zoom's means one thing, decided on its status, its rate-limit
// header and its code, never its words.
func TestClassifyZoomsAnswers(t *testing.T) {
	daily := http.Header{"X-Ratelimit-Type": {"Daily-limit"}}
	qps := http.Header{"X-Ratelimit-Type": {"QPS"}}
	for _, c := range []struct {
		name   string
		status int
		h      http.Header
		code   int
		want   answer
	}{
		{"a listing", 200, nil, 0, answerOK},
		{"trashed", 204, nil, 0, answerOK},
		{"a download's partial content", 206, nil, 0, answerOK},
		{"per-second limit", 429, qps, 429, answerPerSecond},
		{"a 429 without its type (as one was seen)", 429, nil, 429, answerPerSecond},
		{"daily limit", 429, daily, 429, answerDaily},
		{"daily limit on a download", 429, daily, 0, answerDaily},
		{"daily limit, in other letters", 429, http.Header{"X-Ratelimit-Type": {"daily-limit"}}, 429, answerDaily},
		{"expired or revoked token", 401, nil, codeInvalidToken, answerRefused},
		{"token refused by a download host", 401, nil, 0, answerRefused},
		{"download host forbids", 403, nil, 0, answerRefused},
		{"missing scope", 403, nil, codeNoScope, answerRefused},
		{"missing scope, as a 400", 400, nil, codeNoScope, answerRefused},
		{"missing permission", 403, nil, codeNoPermission, answerRefused},
		{"forbidden for another reason", 403, nil, 200, answerOther},
		{"no recording", 404, nil, codeNoRecording, answerGone},
		{"download gone (an HTML page)", 404, nil, 0, answerGone},
		{"an unknown path", 404, nil, 1001, answerOther},
		{"bad window", 400, nil, 300, answerOther},
		{"meeting not over", 400, nil, 3303, answerOther},
		{"server error", 500, nil, 0, answerTransient},
		{"unavailable", 503, nil, 503, answerTransient},
	} {
		if got := classify(c.status, c.h, c.code); got != c.want {
			t.Errorf("%s (%d, code %d): %d, want %d", c.name, c.status, c.code, got, c.want)
		}
	}
}

func TestRetryAfterForms(t *testing.T) {
	now := time.Now()
	fallback := now.Add(time.Hour)
	header := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	in3 := now.Add(3 * time.Second)
	for _, c := range []struct {
		h    http.Header
		want time.Time
	}{
		{header("Retry-After", in3.UTC().Format(time.RFC3339)), in3},
		{header("Retry-After", in3.UTC().Format(http1123)), in3},
		{header("Retry-After", "3"), in3},
		{header("X-RateLimit-Reset", in3.UTC().Format(time.RFC3339)), in3},
		{header("X-RateLimit-Reset", strconv.FormatInt(in3.Unix(), 10)), in3},
		{header("Retry-After", now.Add(-time.Minute).UTC().Format(time.RFC3339)), fallback}, // past: not a reset
		{header("Retry-After", "soon"), fallback},
		{header(), fallback},
	} {
		if got := retryAfter(c.h, now, fallback); got.Sub(c.want).Abs() > time.Second {
			t.Errorf("%v: %s, want %s", c.h, got, c.want)
		}
	}
	if got := nextUTCMidnight(time.Date(2026, 3, 14, 23, 59, 0, 0, time.FixedZone("", -5*3600))); !got.Equal(time.Date(2026, 3, 16, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("next UTC midnight: %s", got)
	}
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

// An API call waits out per-second 429s within maxTries, then gives up to its
// caller (whose message comes back later) instead of looping for as long as Zoom
// says 429.
func TestAPICallsStopAtTheirCapOfRateLimits(t *testing.T) {
	z := standins.NewZoom()
	defer z.Close()
	z.Inject(standins.Fault{Path: "/v2/meetings/", Status: 429, Times: 1000})
	c := newZoomClient(z.APIURL(), z.OAuthURL(), z.AccountID, z.ClientID, z.ClientSecret, hostList{"127.0.0.1"}, time.Millisecond, prometheus.NewRegistry())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, err := c.recording(ctx, "uuid-busy", false)
	var zerr *zoomError
	if !errors.As(err, &zerr) || zerr.answer != answerPerSecond {
		t.Fatalf("err %v, want Zoom's per-second 429", err)
	}
	if n := z.CallsTo("GET", "/v2/meetings/"); n != maxTries {
		t.Errorf("%d tries, want %d", n, maxTries)
	}
}
