package main

import (
	"net"
	"net/url"
	"strings"
	"testing"
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
