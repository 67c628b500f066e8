package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
)

// HEARTBEAT_URL is pinged while every stage reports without a fault, and stops
// when one holds a fault or notify itself cannot mail.
func TestHeartbeatURLOnlyWhileHealthy(t *testing.T) {
	var pings atomic.Int64
	monitor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { pings.Add(1) }))
	t.Cleanup(monitor.Close)
	w := newWorld(t, map[string]string{"HEARTBEAT_URL": monitor.URL + "/ping/secret-uuid", "HEARTBEAT_EVERY": "100ms"})
	w.token.TokenTTL = 11 * time.Second // renewed a second after it is issued
	ctx := context.Background()
	beat := func(stage string, faults ...string) {
		b, _ := json.Marshal(events.Heartbeat{Stage: stage, At: time.Now().UTC(), Faults: faults})
		w.kv.Put(ctx, events.HeartbeatKey(stage), b)
	}
	for _, stage := range []string{"hook", "fetch", "upload"} {
		beat(stage)
	}
	s := w.startNotify(t)
	addr := s.WaitLog(t, "ready")["metrics"].(string)
	waitFor(t, "pings", func() bool { return pings.Load() >= 3 })

	stopped := func(why string) {
		t.Helper()
		time.Sleep(300 * time.Millisecond)
		n := pings.Load()
		time.Sleep(time.Second)
		if got := pings.Load(); got != n {
			t.Errorf("%s: %d pings, want none", why, got-n)
		}
	}
	beat("upload", "google: google refused the token (invalid_grant)")
	stopped("upload holds a fault")
	beat("upload")
	waitFor(t, "pings again", func() bool { n := pings.Load(); time.Sleep(300 * time.Millisecond); return pings.Load() > n })

	// notify's own key refused: no mail can go; readiness and the pings say so.
	w.token.Revoke(true)
	time.Sleep(1500 * time.Millisecond) // the token in hand expires
	w.publish(t, events.FileFailedSubject("f9"), events.FetchFailedID("f9", 8), failedEvent(rehearsal))
	waitFor(t, "readyz failing", func() bool { return obs.Probe(ctx, addr, "/readyz") != nil })
	if err := obs.Probe(ctx, addr, "/readyz"); !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("readyz: %v, want the refusal named", err)
	}
	stopped("notify cannot mail")
	w.token.Revoke(false)
	w.waitMails(t, 1)
	waitFor(t, "ready again", func() bool { return obs.Probe(ctx, addr, "/readyz") == nil })
	if strings.Contains(s.Logs.String(), "secret-uuid") {
		t.Error("the monitor's URL is in the log")
	}
}

// testCA makes a CA and, on demand, certificates for 127.0.0.1 from it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t *testing.T, expires time.Time) *tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: expires,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// A certificate that expires within CERT_WARN_BEFORE raises one alert saying where
// to look; renewed, the next look resolves it.
func TestCertificateExpiringSoonAlertsAndRenewalResolves(t *testing.T) {
	ca := newTestCA(t)
	var current atomic.Pointer[tls.Certificate]
	current.Store(ca.issue(t, time.Now().Add(5*24*time.Hour)))
	site := httptest.NewUnstartedServer(http.NotFoundHandler())
	// Per connection, since a client that dials an IP address sends no server name.
	site.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{*current.Load()}}, nil
	}}
	site.StartTLS()
	t.Cleanup(site.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.pem, 0o644)
	w := newWorld(t, map[string]string{"CERT_CHECK_URL": site.URL + "/zoom/webhook", "CERT_CHECK_CA": caFile})

	s := w.startNotify(t)
	mails := w.waitMails(t, 1)
	if !strings.Contains(mails[0].Subject, "the HTTPS certificate needs attention") || !strings.Contains(mails[0].Text, "in 4 days") ||
		!strings.Contains(mails[0].Text, "certbot") {
		t.Errorf("alert %q:\n%s", mails[0].Subject, mails[0].Text)
	}

	// Renewed; the next day's look (a restart looks at once) resolves the alert.
	current.Store(ca.issue(t, time.Now().Add(89*24*time.Hour)))
	s.Stop()
	w.startNotify(t)
	mails = w.waitMails(t, 2)
	if !strings.Contains(mails[1].Subject, "over: the HTTPS certificate needs attention") {
		t.Errorf("second mail %q, want the alert resolved", mails[1].Subject)
	}

	// A certificate another CA signed is not usable at all.
	other := newTestCA(t)
	current.Store(other.issue(t, time.Now().Add(89*24*time.Hour)))
	w2 := newWorld(t, map[string]string{"CERT_CHECK_URL": site.URL, "CERT_CHECK_CA": caFile})
	w2.startNotify(t)
	if m := w2.waitMails(t, 1); !strings.Contains(m[0].Text, "not usable") || !strings.Contains(m[0].Text, "unknown authority") {
		t.Errorf("a certificate of an unknown CA: %s", m[0].Text)
	}
}
