package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// checkCommand proves the deployment as Zoom and the hook see it: the broker lets
// the hook in, and a URL validation sent to HOOK_PUBLIC_URL, as Zoom's Validate
// button sends it, comes back answered with this secret. That one request proves
// the domain's DNS, the certificate, nginx and the running hook together.
func checkCommand(stdout io.Writer) config.Command {
	return config.CheckCommand("hook", "the broker as hook, and Zoom's URL validation through HOOK_PUBLIC_URL", stdout,
		func(ctx context.Context, v *config.Values, checks *config.Checks) error {
			ver := newVerifier(v.List("ZOOM_WEBHOOK_SECRET"), 0)
			bc, public, connect := bus.ReadConfig(v, events.IdentityHook), v.String("HOOK_PUBLIC_URL"), v.String("HOOK_CHECK_CONNECT")
			if public == "" {
				v.Invalid("HOOK_PUBLIC_URL", "required by check: the webhook's address as Zoom calls it, https://DOMAIN"+webhookPath)
			}
			if err := v.Err(); err != nil {
				return err
			}
			checks.Report("broker: connected as hook", bus.Reach(ctx, bc, false))
			what := "Zoom's URL validation through " + public + " (DNS, certificate, nginx, the running hook's secret)"
			if connect != "" {
				what = "Zoom's URL validation through " + public + " at " + connect + " (certificate, nginx, the running hook's secret; not DNS)"
			}
			checks.Report(what, validateThrough(ctx, public, connect, ver))
			return nil
		})
}

// validateThrough sends a signed endpoint.url_validation to url (at connect, when
// given) and checks the answer, naming what to fix when it does not come back right.
func validateThrough(ctx context.Context, url, connect string, ver *verifier) error {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	plain := hex.EncodeToString(nonce)
	body, _ := json.Marshal(map[string]any{"event": events.EventURLValidation, "event_ts": time.Now().UnixMilli(),
		"payload": map[string]string{"plainToken": plain}})
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("HOOK_PUBLIC_URL: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-zm-request-timestamp", ts)
	req.Header.Set("x-zm-signature", "v0="+hex.EncodeToString(signature(ver.first(), ts, body, nil)))
	client := &http.Client{}
	if connect != "" {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, connect)
		}}
	}
	resp, err := client.Do(req)
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Errorf("%w: point the domain's A record at this host", err)
	case errors.As(err, &certErr):
		return fmt.Errorf("%w: no valid certificate yet; see docker compose logs certbot nginx", err)
	case err != nil:
		return fmt.Errorf("%w: is port 443 open to this host, and nginx up?", err)
	}
	defer resp.Body.Close()
	var answer struct{ PlainToken, EncryptedToken string }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&answer) != nil {
		return fmt.Errorf("answered %s, not the validation: is the hook behind nginx, with the same ZOOM_WEBHOOK_SECRET?", resp.Status)
	}
	if answer.PlainToken != plain || answer.EncryptedToken != ver.encryptToken(plain) {
		return errors.New("answered with another secret: the domain points at another deployment, or the running hook has another ZOOM_WEBHOOK_SECRET")
	}
	return nil
}
