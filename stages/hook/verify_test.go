package main

import (
	"strconv"
	"testing"
	"time"

	"zoomarchive/shared/standins"
)

// Vectors computed independently with openssl:
//
//	printf '%s' "$msg" | openssl dgst -sha256 -hmac "$secret"
const (
	testSecret     = "zoomarchive-test-secret"
	crcBody        = `{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}`
	crcTS          = "1654503849"
	crcSignature   = "v0=3da715274f83a02aa5b2db018f159d99dee971538eed48306fd28a92b6fe1f81"
	crcEncrypted   = "e585439fbf64c16b75e2acec22fc882febf0e8c3962acc419d8c10e912033a38"
	capturedBody   = `{"payload":{"plainToken":"2oXY7bAKQLCwXDMECt8m_g"},"event_ts":1759205906459,"event":"endpoint.url_validation"}`
	capturedTS     = "1759205906"
	capturedSecret = "old-secret-2025"
	capturedSig    = "v0=34fe22b75eddd5c6c1b8b3c04cc6cc0950045cf1fe6a748e36232b5c117c3039"
)

func at(ts string) time.Time {
	n, _ := strconv.ParseInt(ts, 10, 64)
	return time.Unix(n, 0)
}

func TestVerifyKnownVectors(t *testing.T) {
	v := newVerifier([]string{testSecret}, 300*time.Second)
	if err := v.check(crcTS, crcSignature, []byte(crcBody), at(crcTS)); err != nil {
		t.Fatalf("documented url_validation shape, openssl signature: %v", err)
	}
	if got := v.encryptToken("qgg8vlvZRS6UYooatFL8Aw"); got != crcEncrypted {
		t.Fatalf("encryptedToken = %s, openssl says %s", got, crcEncrypted)
	}
	if got := standins.SignZoom(testSecret, crcTS, []byte(crcBody)); got != crcSignature {
		t.Fatalf("stand-in signs %s, openssl says %s", got, crcSignature)
	}
}

func TestVerifyRotation(t *testing.T) {
	v := newVerifier([]string{"new-secret", capturedSecret}, 300*time.Second)
	if err := v.check(capturedTS, capturedSig, []byte(capturedBody), at(capturedTS)); err != nil {
		t.Fatalf("second secret must verify during rotation: %v", err)
	}
	if v.encryptToken("x") != newVerifier([]string{"new-secret"}, time.Second).encryptToken("x") {
		t.Fatal("URL validation must answer with the first secret")
	}
	only := newVerifier([]string{"new-secret"}, 300*time.Second)
	if err := only.check(capturedTS, capturedSig, []byte(capturedBody), at(capturedTS)); err != errBadSignature {
		t.Fatalf("a dropped secret must no longer verify, got %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	v := newVerifier([]string{testSecret}, 300*time.Second)
	now := at(crcTS)
	body := []byte(crcBody)
	flipped := []byte(crcBody)
	flipped[10] ^= 1
	cases := []struct {
		name, ts, sig string
		body          []byte
		now           time.Time
		want          error
	}{
		{"no timestamp", "", crcSignature, body, now, errBadHeaders},
		{"no signature", crcTS, "", body, now, errBadHeaders},
		{"milliseconds timestamp", crcTS + "680", crcSignature, body, now, errBadHeaders},
		{"signed timestamp", "+" + crcTS, crcSignature, body, now, errBadHeaders},
		{"other scheme", crcTS, "v1=" + crcSignature[3:], body, now, errBadHeaders},
		{"short signature", crcTS, crcSignature[:60], body, now, errBadHeaders},
		{"not hex", crcTS, crcSignature[:66] + "zz", body, now, errBadHeaders},
		{"301 s old", crcTS, crcSignature, body, now.Add(301 * time.Second), errStale},
		{"301 s ahead", crcTS, crcSignature, body, now.Add(-301 * time.Second), errStale},
		{"one bit of body changed", crcTS, crcSignature, flipped, now, errBadSignature},
		{"body with trailing newline", crcTS, crcSignature, append([]byte(crcBody), '\n'), now, errBadSignature},
		{"other secret", capturedTS, capturedSig, []byte(capturedBody), at(capturedTS), errBadSignature},
	}
	for _, c := range cases {
		if err := v.check(c.ts, c.sig, c.body, c.now); err != c.want {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if err := v.check(crcTS, crcSignature, body, now.Add(299*time.Second)); err != nil {
		t.Errorf("299 s old must pass: %v", err)
	}
}

// FuzzVerify: verification never panics, and accepts exactly the signature Zoom
// would compute (the stand-in's independent HMAC) for a fresh timestamp.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(crcBody), crcTS, crcSignature)
	f.Add([]byte(capturedBody), capturedTS, capturedSig)
	f.Add([]byte("{}"), "0", "v0=")
	f.Add([]byte(""), "99999999999", "v0="+crcSignature)
	v := newVerifier([]string{testSecret}, 300*time.Second)
	f.Fuzz(func(t *testing.T, body []byte, ts, sig string) {
		now := at(crcTS)
		err := v.check(ts, sig, body, now)
		if err == nil && sig != standins.SignZoom(testSecret, ts, body) {
			t.Fatalf("accepted a signature Zoom would not send: ts=%q sig=%q", ts, sig)
		}
		if n, ok := parseTimestamp(ts); ok && n >= now.Unix()-300 && n <= now.Unix()+300 {
			if err := v.check(ts, standins.SignZoom(testSecret, ts, body), body, now); err != nil {
				t.Fatalf("rejected a genuine signature: %v", err)
			}
		}
	})
}

// download_token leaves the stored body wherever it stands, and only it.
func TestWithoutDownloadToken(t *testing.T) {
	for body, want := range map[string]string{
		`{"download_token":"t.1","event":"e","payload":{"a":1}}`: `{"event":"e","payload":{"a":1}}`,
		`{"event":"e","download_token":"t.1","payload":{"a":1}}`: `{"event":"e","payload":{"a":1}}`,
		`{"event":"e","payload":{"a":1},"download_token":"t.1"}`: `{"event":"e","payload":{"a":1}}`,
		`{"download_token":"t.1"}`:                               `{}`,
		`{"event": "e", "download_token": "t.1"}`:                `{"event":"e"}`, // not compact: through a map
	} {
		got, err := withoutDownloadToken([]byte(body), "t.1")
		if err != nil || string(got) != want {
			t.Errorf("%s: %s (%v), want %s", body, got, err, want)
		}
	}
	if got, _ := withoutDownloadToken([]byte(`{"event":"e"}`), ""); string(got) != `{"event":"e"}` {
		t.Errorf("a body without one: %s", got)
	}
}
