package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// What is left when mail cannot go: HEARTBEAT_URL is pinged only while every
// stage reports and none holds a fault, so an outside monitor raises the alarm when
// the pipeline, or notify itself, is down. And once a day the certificate the
// domain serves is looked at, so that a failing renewal is seen long before Zoom's
// deliveries fail.

// pingHeartbeat GETs HEARTBEAT_URL every HEARTBEAT_EVERY while all is well.
func (st *stage) pingHeartbeat(ctx context.Context) {
	if st.heartbeatURL == "" || st.now().Sub(st.lastPing) < st.heartbeatEvery {
		return
	}
	if why := st.unhealthy(ctx); why != nil {
		st.log.Warn("HEARTBEAT_URL not pinged: the pipeline is not healthy", "why", why)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.heartbeatURL, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is the monitor's secret: never in a log
		}
		st.log.Warn("HEARTBEAT_URL ping failed", "err", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		st.log.Warn("HEARTBEAT_URL ping refused", "status", resp.StatusCode)
		return
	}
	st.lastPing = st.now()
}

// heartbeats are the stages' last heartbeats, by stage; a stage that never
// reported has none. An error is the job bucket's.
func (st *stage) heartbeats(ctx context.Context) (map[string]events.Heartbeat, error) {
	hbs := map[string]events.Heartbeat{}
	for _, stage := range events.Stages {
		hb, found, err := bus.Get[events.Heartbeat](ctx, st.kv, events.HeartbeatKey(stage))
		if err != nil {
			return hbs, err
		}
		if found {
			hbs[stage] = hb
		}
	}
	return hbs, nil
}

// unhealthy says what is wrong with the pipeline, or nil: a stage that never
// reported or went silent, a fault a stage reports, or notify's own.
func (st *stage) unhealthy(ctx context.Context) error {
	if err := st.health.Err(); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	hbs, err := st.heartbeats(ctx)
	if err != nil {
		return err
	}
	for _, stage := range events.Stages {
		hb, found := hbs[stage]
		switch {
		case !found:
			return fmt.Errorf("%s has never reported", stage)
		case st.now().Sub(hb.At) > st.silent:
			return fmt.Errorf("%s silent since %s", stage, hb.At.Format(time.RFC3339))
		case len(hb.Faults) > 0:
			return fmt.Errorf("%s: %s", stage, strings.Join(hb.Faults, "; "))
		}
	}
	return nil
}

// certCheck is CERT_CHECK_URL and how its certificate is judged.
type certCheck struct {
	url   string
	roots *x509.CertPool // CERT_CHECK_CA; nil: the system's
	warn  time.Duration
	last  time.Time
}

func readCertCheck(v *config.Values) certCheck {
	c := certCheck{url: v.String("CERT_CHECK_URL"), warn: v.Duration("CERT_WARN_BEFORE")}
	if u, err := url.Parse(c.url); c.url != "" && (err != nil || u.Scheme != "https" || u.Host == "") {
		v.Invalid("CERT_CHECK_URL", "not an https URL")
	}
	if file := v.String("CERT_CHECK_CA"); file != "" {
		pem, err := os.ReadFile(file)
		c.roots = x509.NewCertPool()
		if err != nil || !c.roots.AppendCertsFromPEM(pem) {
			v.Invalid("CERT_CHECK_CA", "not a readable PEM file of certificates")
		}
	}
	return c
}

// checkCertificate looks at the certificate once a day: one that is invalid or
// expires within CERT_WARN_BEFORE raises an alert, a good one resolves it.
func (st *stage) checkCertificate(ctx context.Context) {
	now := st.now()
	if st.cert.url == "" || now.Sub(st.cert.last) < 24*time.Hour {
		return
	}
	st.cert.last = now
	notAfter, err := st.cert.inspect(ctx, now)
	host := st.cert.host()
	switch {
	case err != nil:
		st.raise(ctx, events.AlertCertificate, fmt.Sprintf("The certificate %s serves is not usable: %v. "+
			"Zoom delivers webhooks only over valid HTTPS. On the server: sudo docker compose logs --tail 50 certbot nginx.", host, err))
	case notAfter.Sub(now) < st.cert.warn:
		st.raise(ctx, events.AlertCertificate, fmt.Sprintf("The certificate of %s expires on %s, in %d days. "+
			"It should have been renewed at 30 days left, so renewal is failing: on the server, sudo docker compose logs --tail 50 certbot, "+
			"and check that the domain's A record still points at this server. Zoom's deliveries fail once it expires.",
			host, notAfter.In(st.tz).Format("Mon 2 Jan 2006, 15:04 MST"), int(notAfter.Sub(now).Hours()/24)))
	default:
		st.clear(ctx, events.AlertCertificate, fmt.Sprintf("The certificate of %s is valid until %s.", host, notAfter.In(st.tz).Format("2 Jan 2006")))
	}
}

func (c certCheck) host() string {
	u, _ := url.Parse(c.url)
	return u.Hostname()
}

// inspect reads the certificate chain the URL's host serves and verifies it for
// the host at now; it returns the leaf's expiry.
func (c certCheck) inspect(ctx context.Context, now time.Time) (time.Time, error) {
	u, _ := url.Parse(c.url)
	port := u.Port()
	if port == "" {
		port = "443"
	}
	// The chain is verified below, by hand, so that an expired one is still read.
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second},
		Config: &tls.Config{ServerName: u.Hostname(), InsecureSkipVerify: true}}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return time.Time{}, errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	_, err = certs[0].Verify(x509.VerifyOptions{DNSName: u.Hostname(), Roots: c.roots, Intermediates: inter, CurrentTime: now})
	return certs[0].NotAfter, err
}
