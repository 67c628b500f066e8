package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"sync/atomic"
	"time"
)

// Zoom signs each delivery (and each retry anew):
//
//	x-zm-signature = "v0=" + hex(HMAC-SHA256(secret, "v0:" + x-zm-request-timestamp + ":" + raw body))
//
// The timestamp is epoch seconds, used verbatim; the body is the raw bytes received.

var (
	errBadHeaders   = errors.New("missing or malformed x-zm-signature or x-zm-request-timestamp")
	errStale        = errors.New("x-zm-request-timestamp too far from now")
	errBadSignature = errors.New("signature matches no configured secret")
)

// verifier checks signatures against every configured secret; the first one also
// answers URL validation (rotation: docs/operating.md, Rotating credentials). The secrets can change
// while requests are checked (a reload of ZOOM_WEBHOOK_SECRET_FILE).
type verifier struct {
	secrets atomic.Pointer[[][]byte]
	maxSkew time.Duration
}

func newVerifier(secrets []string, maxSkew time.Duration) *verifier {
	v := &verifier{maxSkew: maxSkew}
	v.set(secrets)
	return v
}

// set replaces the secrets; requests under way finish with the ones they had.
func (v *verifier) set(secrets []string) {
	b := make([][]byte, 0, len(secrets))
	for _, s := range secrets {
		b = append(b, []byte(s))
	}
	v.secrets.Store(&b)
}

// count is how many secrets verify.
func (v *verifier) count() int { return len(*v.secrets.Load()) }

// first is the secret that answers URL validation (and signs hook check's).
func (v *verifier) first() []byte { return (*v.secrets.Load())[0] }

// check returns nil when sig is a valid signature of body at timestamp ts, made with
// any configured secret, and ts is within maxSkew of now.
func (v *verifier) check(ts, sig string, body []byte, now time.Time) error {
	sent, ok := parseTimestamp(ts)
	if !ok || len(sig) != 3+2*sha256.Size || sig[:3] != "v0=" {
		return errBadHeaders
	}
	want := make([]byte, sha256.Size)
	if _, err := hex.Decode(want, []byte(sig[3:])); err != nil || hex.EncodeToString(want) != sig[3:] {
		return errBadHeaders // Zoom sends lowercase hex; anything else is not its signature
	}
	if d := now.Sub(time.Unix(sent, 0)); d > v.maxSkew || d < -v.maxSkew {
		return errStale
	}
	var got []byte
	for _, secret := range *v.secrets.Load() {
		if got = signature(secret, ts, body, got[:0]); hmac.Equal(got, want) {
			return nil
		}
	}
	return errBadSignature
}

// signature is HMAC-SHA256(secret, "v0:{ts}:{body}") appended to buf: Zoom's
// x-zm-signature without its "v0=" and hex.
func signature(secret []byte, ts string, body, buf []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("v0:"))
	mac.Write([]byte(ts))
	mac.Write([]byte(":"))
	mac.Write(body)
	return mac.Sum(buf)
}

// encryptToken is the URL validation answer: hex(HMAC-SHA256(first secret, plainToken)).
func (v *verifier) encryptToken(plain string) string {
	mac := hmac.New(sha256.New, v.first())
	mac.Write([]byte(plain))
	return hex.EncodeToString(mac.Sum(nil))
}

// parseTimestamp accepts the decimal epoch seconds Zoom sends, nothing else.
func parseTimestamp(ts string) (int64, bool) {
	if ts == "" || len(ts) > 12 {
		return 0, false
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	return n, err == nil
}
