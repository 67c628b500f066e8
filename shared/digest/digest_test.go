package digest

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"hash"
	"testing"
)

func TestResumeGoesOnWhereStateStopped(t *testing.T) {
	for _, newHash := range []func() hash.Hash{md5.New, sha256.New} {
		whole := newHash()
		whole.Write([]byte("first half, second half"))
		h := newHash()
		h.Write([]byte("first half, "))
		r, err := Resume(newHash(), State(h))
		if err != nil {
			t.Fatal(err)
		}
		r.Write([]byte("second half"))
		if !bytes.Equal(r.Sum(nil), whole.Sum(nil)) {
			t.Errorf("%T: resumed sum differs from the whole's", h)
		}
	}
}

func TestResumeRefusesAnotherHashOrDamage(t *testing.T) {
	md := State(md5.New())
	for name, state := range map[string][]byte{
		"sha-256 state into md5": State(sha256.New()),
		"truncated":              md[:len(md)-3],
		"garbage":                []byte("not a state at all"),
	} {
		if _, err := Resume(md5.New(), state); err == nil {
			t.Errorf("%s: resumed", name)
		}
	}
	if h, err := Resume(md5.New(), nil); err != nil || !bytes.Equal(h.Sum(nil), md5.New().Sum(nil)) {
		t.Errorf("no state: %v", err)
	}
}
