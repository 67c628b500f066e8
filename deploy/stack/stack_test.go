//go:build stack

// Package stack runs the deployment as an operator does: compose.yaml with the
// project's images, nginx and certbot built from Debian packages, on Podman
// through the real docker compose v2, with Zoom, Google and Let's Encrypt played
// by the stand-ins and Pebble in their own containers. `make stack` builds what it
// needs and runs it; it is part of `make test`.
package stack

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"zoomarchive/docs"
	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

func TestStack(t *testing.T) {
	s := newStack(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go runHealthchecks(ctx)
	s.compose("down", "-v", "--remove-orphans") // what an earlier run left
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := s.compose("logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", out)
		}
		if os.Getenv("STACK_KEEP") == "" {
			s.compose("down", "-v", "--remove-orphans")
		}
	})

	s.writeCreds()
	// Everything but certbot first: nginx must come up without a certificate.
	s.mustCompose("up", "-d", "--no-build", "broker", "hook", "fetch", "upload", "notify", "standins", "pebble", "nginx")
	t.Run("nginx starts before any certificate exists", func(t *testing.T) {
		var cert *x509.Certificate
		stagetest.Eventually(t, "nginx on 443", 60*time.Second, time.Second, func() (err error) { cert, _, err = s.servedCert(); return err })
		if cert.Subject.CommonName != domain || cert.Issuer.String() != cert.Subject.String() {
			t.Fatalf("bootstrap certificate: subject %s issuer %s", cert.Subject, cert.Issuer)
		}
	})
	t.Run("every service with a healthcheck turns healthy", func(t *testing.T) {
		stagetest.Eventually(t, "healthy services", 2*time.Minute, time.Second, func() error {
			for _, svc := range []string{"broker", "hook", "fetch", "upload", "notify", "nginx"} {
				if st := podman(t, "inspect", "--format", "{{.State.Health.Status}}", container(svc)); strings.TrimSpace(st) != "healthy" {
					return fmt.Errorf("%s is %s", svc, strings.TrimSpace(st))
				}
			}
			return nil
		})
	})
	t.Run("port 80 redirects all but the ACME challenge to the domain, another name gets nothing", func(t *testing.T) {
		c := s.client(nil, 0, 0)
		resp := get(t, c, "http://"+domain+"/zoom/webhook?x=1")
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "https://"+domain+"/zoom/webhook?x=1" {
			t.Fatalf("port 80: %s, Location %q", resp.Status, resp.Header.Get("Location"))
		}
		if resp := get(t, c, "http://"+domain+"/.well-known/acme-challenge/none"); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("a missing challenge file: %s (want 404 from the webroot, not a redirect)", resp.Status)
		}
		// Another name, or the bare address: the connection closed, no redirect.
		for _, host := range []string{"evil.example", "127.0.0.1"} {
			if resp, err := c.Get("http://" + host + "/zoom/webhook"); err == nil {
				resp.Body.Close()
				t.Errorf("port 80 for %s: %s, Location %q (want the connection closed)", host, resp.Status, resp.Header.Get("Location"))
			}
		}
	})

	// As the operator does once nginx is up; named, so that the isolation and
	// secrets checks below can look at the run's container.
	s.mustCompose("run", "--no-deps", "--name", container("certbot"), "certbot")
	var roots *x509.CertPool
	var issued *x509.Certificate
	t.Run("certbot gets a certificate from Pebble over HTTP-01 and nginx serves it", func(t *testing.T) {
		stagetest.Eventually(t, "a Pebble certificate on 443", 3*time.Minute, time.Second, func() error {
			leaf, chain, err := s.servedCert()
			if err != nil {
				return err
			}
			if roots, err = s.pebbleRoots(); err != nil {
				return err
			}
			inter := x509.NewCertPool()
			for _, c := range chain {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: domain, Roots: roots, Intermediates: inter}); err != nil {
				return err
			}
			// An old worker may still take a connection or two just after the reload.
			time.Sleep(time.Second)
			if again, _, err := s.servedCert(); err != nil || !again.Equal(leaf) {
				return fmt.Errorf("a second connection got another certificate (%v)", err)
			}
			issued = leaf
			return nil
		})
	})
	if issued == nil {
		t.FailNow()
	}

	t.Run("nginx, certbot, the hook and the broker cannot reach what they must not", s.isolation)
	t.Run("certbot sees no secret", func(t *testing.T) { s.sees(t, "certbot", ".creds") })
	podman(t, "rm", container("certbot")) // the first certificate's run, looked at
	t.Run("deploy/check proves the deployment", s.deployCheck)

	c12 := s.client(roots, tls.VersionTLS12, tls.VersionTLS12)
	c13 := s.client(roots, tls.VersionTLS13, tls.VersionTLS13)
	hookURL := "https://" + domain + "/zoom/webhook"
	t.Run("TLS, headers and what reaches the hook", func(t *testing.T) {
		for _, c := range []*http.Client{c12, c13} {
			resp := post(t, c, hookURL, []byte(`{}`))
			if resp.StatusCode != http.StatusUnauthorized { // the hook's answer to an unsigned body
				t.Errorf("unsigned POST through nginx: %s", resp.Status)
			}
			if suite := tls.CipherSuiteName(resp.TLS.CipherSuite); !strings.Contains(suite, "GCM") && !strings.Contains(suite, "CHACHA20") {
				t.Errorf("negotiated %s", suite)
			}
			if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(hsts, "max-age=") {
				t.Errorf("HSTS: %q", hsts)
			}
		}
		if err := tls11Handshake(s.https); err == nil {
			t.Errorf("nginx accepted TLS 1.1")
		}
		// Another name: no handshake; the domain's handshake with another Host: no answer.
		if conn, err := tls.Dial("tcp", s.https, &tls.Config{ServerName: "evil.example", InsecureSkipVerify: true}); err == nil {
			conn.Close()
			t.Errorf("nginx completed a TLS handshake for another name")
		}
		other, _ := http.NewRequest("POST", hookURL, strings.NewReader(`{}`))
		other.Host = "evil.example"
		if resp, err := c13.Do(other); err == nil {
			resp.Body.Close()
			t.Errorf("a request for another host over the domain's TLS: %s (want the connection closed)", resp.Status)
		}
		cbc := &tls.Config{ServerName: domain, RootCAs: roots, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}}
		if conn, err := tls.Dial("tcp", s.https, cbc); err == nil {
			conn.Close()
			t.Errorf("nginx accepted a TLS 1.2 client offering only CBC suites")
		}
		// The same client does speak TLS 1.1 to a server that allows it.
		old := httptest.NewUnstartedServer(http.NotFoundHandler())
		old.TLS = &tls.Config{MinVersion: tls.VersionTLS10}
		old.StartTLS()
		defer old.Close()
		if err := tls11Handshake(old.Listener.Addr().String()); err != nil {
			t.Fatalf("the TLS 1.1 client fails even where TLS 1.1 is allowed: %v", err)
		}
		for _, tc := range []struct {
			method, path string
			body         []byte
			want         int
		}{
			{"GET", "/zoom/webhook", nil, 404},
			{"POST", "/zoom/webhook/", []byte("{}"), 404},
			{"POST", "/metrics", []byte("{}"), 404},
			{"GET", "/", nil, 404},
			{"POST", "/zoom/webhook", bytes.Repeat([]byte("a"), 2<<20), 413},
		} {
			req, _ := http.NewRequest(tc.method, "https://"+domain+tc.path, bytes.NewReader(tc.body))
			resp, err := c13.Do(req)
			if err != nil {
				t.Errorf("%s %s: %v", tc.method, tc.path, err)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s (%d bytes): %s, want %d", tc.method, tc.path, len(tc.body), resp.Status, tc.want)
			}
			if srv := resp.Header.Get("Server"); srv != "nginx" {
				t.Errorf("Server header %q: the version must not show", srv)
			}
		}
	})

	var st standins.State
	stagetest.Eventually(t, "the stand-ins' state", time.Minute, time.Second, func() (err error) { st, err = s.state(); return err })
	var total int64
	for _, f := range st.Zoom {
		total += f.Size
	}
	t.Run("the hook's identity cannot mark a file verified", func(t *testing.T) { s.hookCannotVerify(t, st.Zoom[0].Name) })

	zoom := &standins.ZoomWebhooks{URL: hookURL, Secret: webhookSecret, Client: c13}
	delivery := standins.Delivery{Body: st.Completed, RequestID: standins.NewZoomRequestID()}
	// The smallest file Zoom refuses until the failure mail's command retries it.
	refused := st.Zoom[0]
	for _, f := range st.Zoom {
		if f.Size < refused.Size {
			refused = f
		}
	}
	t.Run("a signed recording.completed over HTTPS is archived, even with stages killed mid-transfer and a file retried from its failure mail", func(t *testing.T) {
		services := []string{"broker", "hook", "fetch", "upload", "notify", "nginx"} // certbot ran and left
		idle := stackMemory(t, services)
		time.Sleep(2 * time.Second)
		idleTotal, idleAnon := idle()
		t.Logf("the stack together, idle: %.1f MiB, page cache included; %.1f MiB anonymous", idleTotal, idleAnon)
		stopSampling := stackMemory(t, services)
		s.fault(t, http.MethodPost, standins.Fault{Path: "/file/" + refused.Name, Status: 500, Times: 1 << 30})
		status, body, err := zoom.Send(context.Background(), delivery)
		if err != nil || status != http.StatusOK {
			t.Fatalf("delivery: %d %s %v", status, body, err)
		}
		// SIGKILL upload at a third of the bytes and fetch at two thirds; the
		// restart policy brings each back.
		for _, kill := range []struct {
			service string
			at      int64
		}{{"upload", total / 3}, {"fetch", 2 * total / 3}} {
			stagetest.Eventually(t, kill.service+"'s moment", 3*time.Minute, time.Second, func() error {
				if st, err := s.state(); err != nil || st.Served < kill.at {
					return fmt.Errorf("Zoom served %d of %d bytes (%v)", st.Served, total, err)
				}
				return nil
			})
			// From outside, as a crash: the engine did not stop it, so the
			// restart policy brings it back.
			pid := strings.TrimSpace(podman(t, "inspect", "--format", "{{.State.Pid}}", container(kill.service)))
			if out, err := exec.Command("kill", "-KILL", pid).CombinedOutput(); err != nil {
				t.Fatalf("kill %s (%s): %v %s", kill.service, pid, err, out)
			}
			t.Logf("killed %s with %d of %d bytes served", kill.service, kill.at, total)
		}
		var retry string
		stagetest.Eventually(t, "the failure mail", 5*time.Minute, time.Second, func() error {
			st, err := s.state()
			for _, m := range st.Mails {
				for _, line := range strings.Split(m.Text, "\n") {
					if strings.HasPrefix(m.Subject, "Not archived:") && strings.Contains(line, "fetch retry") {
						retry = strings.TrimSpace(line)
					}
				}
			}
			if retry == "" {
				return fmt.Errorf("no failure mail with a retry command (%v)", err)
			}
			if len(st.Trash) != 0 {
				return fmt.Errorf("trashed with a file failed: %q", st.Trash)
			}
			return nil
		})
		// The operator pastes it on the droplet, in the compose project.
		args, ok := strings.CutPrefix(retry, "cd /opt/zoomarchive && sudo docker compose ")
		if !ok {
			t.Fatalf("the mail's command %q is not a compose command in the project's folder", retry)
		}
		s.fault(t, http.MethodDelete, standins.Fault{})
		t.Logf("%s\n%s", retry, s.mustCompose(strings.Fields(args)...))
		stagetest.Eventually(t, "every file verified in Drive, the recording trashed, the mail sent", 5*time.Minute, time.Second, func() error {
			st, err := s.state()
			if err != nil {
				return err
			}
			if err := sameFiles(st); err != nil {
				return err
			}
			archived := 0
			for _, m := range st.Mails {
				if strings.HasPrefix(m.Subject, "Archived:") {
					archived++
				}
			}
			if len(st.Trash) != 1 || archived != 1 {
				return fmt.Errorf("trash calls %q, archived mails %d", st.Trash, archived)
			}
			return nil
		})
		total, anon := stopSampling()
		t.Logf("the stack together during the archive, at its peak: %.1f MiB, page cache included; %.1f MiB anonymous", total, anon)
		st, _ := s.state()
		for _, m := range st.Mails {
			t.Logf("mail to %s: %s", m.To, m.Subject)
		}
		// Only the two killed stages restarted, once each: nothing crashed or ran
		// out of its memory limit on its own.
		for _, svc := range services {
			want := "0"
			if svc == "upload" || svc == "fetch" {
				want = "1"
			}
			got := strings.Fields(podman(t, "inspect", "--format", "{{.RestartCount}} {{.State.OOMKilled}}", container(svc)))
			if got[0] != want || got[1] != "false" {
				t.Errorf("%s: restarted %s times (want %s), OOM-killed %s", svc, got[0], want, got[1])
			}
			t.Logf("%s: peak cgroup memory, page cache included: %s", svc, peakMemory(t, container(svc)))
		}
	})
	t.Run("docs/operating.md's console commands run through the nats service", func(t *testing.T) { s.consoleCommands(t, refused.Name) })
	t.Run("the hook logs the client's address nginx saw", func(t *testing.T) {
		seen := map[string]bool{} // by nginx
		access, _ := os.ReadFile(filepath.Join(s.dir, "logs/nginx/access.log"))
		for _, line := range strings.Split(string(access), "\n") {
			var l struct{ Client string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Client != "" {
				seen[l.Client] = true
			}
		}
		found := false
		for _, line := range strings.Split(s.mustCompose("logs", "--no-color", "hook"), "\n") {
			_, js, _ := strings.Cut(line, "| ")
			var l struct{ Msg, Client, Remote string }
			if json.Unmarshal([]byte(js), &l) == nil && l.Msg == "webhook" {
				if !seen[l.Client] || l.Remote == l.Client {
					t.Fatalf("hook logged client %q (remote %q); nginx saw %v", l.Client, l.Remote, seen)
				}
				found = true
			}
		}
		if !found {
			t.Fatal("no webhook lines in the hook's log")
		}
	})
	t.Run("a stuck broker still gets Zoom an answer within its 3 s", func(t *testing.T) {
		podman(t, "pause", container("broker"))
		retry := standins.Delivery{Body: st.Completed, RequestID: standins.NewZoomRequestID()}
		start := time.Now()
		status, _, err := zoom.Send(context.Background(), retry)
		took := time.Since(start)
		podman(t, "unpause", container("broker"))
		if err != nil || status != http.StatusServiceUnavailable || took >= 3*time.Second {
			t.Fatalf("with the broker paused: %d %v after %s (want 503 before Zoom's 3 s)", status, err, took)
		}
		stagetest.Eventually(t, "the retry stored once the broker is back", time.Minute, time.Second, func() error {
			status, _, err := zoom.Send(context.Background(), retry)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("status %d", status)
			}
			return err
		})
	})
	t.Run("each stage sees only its own secrets", func(t *testing.T) {
		s.sees(t, "hook", "ZOOM_ACCOUNT_ID", "fetch.creds", "upload.creds", "operator.creds")
		s.sees(t, "fetch", "hook.creds", "upload.creds", "operator.creds")
		s.sees(t, "upload", "fetch.creds", "operator.creds")
		s.sees(t, "notify", "fetch.creds", "upload.creds", "operator.creds")
		s.sees(t, "nginx", ".creds")
		s.sees(t, "broker", "hook.creds", "fetch.creds", "operator.creds")
	})
	t.Run("the webhook secret rotates in its file, without a restart", func(t *testing.T) {
		// Written in place, as docs/operating.md's steps do: the container's mount is the file itself.
		path := filepath.Join(s.dir, "secrets/zoom-webhook-secret")
		set := func(secrets string) { stagetest.Rewrite(t, path, secrets+"\n") }
		validation := standins.Delivery{Body: []byte(`{"event":"endpoint.url_validation","payload":{"plainToken":"rotation"},"event_ts":1}`)}
		answers := func(secret string, want int) func() error {
			return func() error {
				validation.RequestID = standins.NewZoomRequestID()
				status, _, err := (&standins.ZoomWebhooks{URL: hookURL, Secret: secret, Client: c13}).Send(context.Background(), validation)
				if err == nil && status != want {
					err = fmt.Errorf("signed with %s: status %d, want %d", secret, status, want)
				}
				return err
			}
		}
		set(webhookSecret + ",rotated-webhook-secret")
		stagetest.Eventually(t, "the added secret verifies", 30*time.Second, time.Second, answers("rotated-webhook-secret", http.StatusOK))
		set(webhookSecret)
		stagetest.Eventually(t, "the dropped secret no longer does", 30*time.Second, time.Second, answers("rotated-webhook-secret", http.StatusUnauthorized))
		if err := answers(webhookSecret, http.StatusOK)(); err != nil {
			t.Error(err)
		}
		if n := restarts(t, "hook"); n != "0" {
			t.Errorf("the hook restarted %s times", n)
		}
	})
	t.Run("rotate-key puts a new Google key in use in each stage and deletes the old, without a restart", func(t *testing.T) {
		unrestarted := notRestarted(t, "upload", "fetch", "notify")
		if out, err := s.compose("run", "--rm", "rotate-key", "--dry-run"); err != nil || strings.Count(out, "would make a new key") != 3 {
			t.Fatalf("dry run: %v\n%s", err, out)
		}
		start := time.Now()
		out, err := s.compose("run", "--rm", "rotate-key")
		if err != nil || strings.Count(out, "Google key was rotated") != 3 {
			t.Fatalf("rotate-key: %v\n%s", err, out)
		}
		t.Logf("rotate-key in %s:\n%s", time.Since(start).Round(time.Second), out)
		st, serr := s.state()
		for _, stage := range events.GoogleKeyHolders {
			b, err := os.ReadFile(filepath.Join(s.dir, "secrets/google-"+stage+".json"))
			if err != nil {
				t.Fatal(err)
			}
			key, err := serviceaccount.ReadKeyFile(b)
			if keys := st.GoogleKeys[key.Account]; err != nil || serr != nil || len(keys) != 1 || keys[0] != key.ID || strings.HasSuffix(key.ID, "-key-1") {
				t.Fatalf("%s's key file %q (%v), keys at Google %v (%v): want one new key, in the file", stage, key.ID, err, keys, serr)
			}
			if logs, _ := s.compose("logs", stage); !strings.Contains(logs, `"the new Google key is in use"`) {
				t.Errorf("%s did not say it took the new key", stage)
			}
		}
		unrestarted()
	})
	t.Run("one program's broker identity is renewed, the others keep theirs, nothing restarts", func(t *testing.T) {
		dir := filepath.Join(s.dir, "secrets/nats")
		user := func(id string) string {
			b, _ := os.ReadFile(filepath.Join(dir, id+".creds"))
			return string(b)
		}
		unrestarted := notRestarted(t, "hook", "fetch", "upload", "notify")
		notify, hook := user("notify"), user("hook")
		// docs/operating.md's step is compose run of the broker's service; here that would take
		// the running broker's fixed address (compose.stack.yaml), so the same image
		// runs as compose would run it, on no network, which the command needs none of.
		out, err := exec.Command("podman", "run", "--rm", "--network", "none", "--user", "0:65532", "--cap-drop", "ALL", "-v", dir+":/creds",
			"localhost/zoomarchive/broker:latest", "creds", "--renew", "notify", "/creds").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "renewed notify") || user("notify") == notify || user("hook") != hook {
			t.Fatalf("broker creds --renew notify: %v\n%s", err, out)
		}
		stagetest.Eventually(t, "notify on its new identity, the old one revoked", 2*time.Minute, 2*time.Second, func() error {
			if logs, _ := s.compose("logs", "notify"); !strings.Contains(logs, `"broker identity renewed"`) {
				return errors.New("notify has not taken its new identity")
			}
			if logs, _ := s.compose("logs", "broker"); !strings.Contains(logs, `"account updated"`) {
				return errors.New("the broker has not applied the revocation")
			}
			return nil
		})
		unrestarted()
	})
	// nginx's limits per address (nginx/nginx.conf): 64 requests in flight (503
	// beyond), 20 a second with 200 at once on top (429 beyond). Each request here is a
	// refusal the hook holds 250 ms, so the ones sent at once are in flight together.
	burst := func(n, conns int) map[int]int {
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		next := make(chan struct{}, n)
		for range n {
			next <- struct{}{}
		}
		close(next)
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range next {
					code := 0
					if resp, err := c13.Post(hookURL, "application/json", strings.NewReader(`{}`)); err == nil {
						resp.Body.Close()
						code = resp.StatusCode
					}
					mu.Lock()
					codes[code]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return codes
	}
	t.Run("more requests in flight from one address than the limit are refused", func(t *testing.T) {
		time.Sleep(10 * time.Second) // the rate limit's bucket refills from the requests above
		if codes := burst(150, 150); codes[http.StatusServiceUnavailable] == 0 || codes[http.StatusUnauthorized] < 64 || codes[http.StatusTooManyRequests] > 0 {
			t.Fatalf("150 requests at once: %v (want 64 through to the hook at least, some 503, no 429)", codes)
		}
	})
	t.Run("a burst beyond the rate limit is refused, Zoom's pace is not", func(t *testing.T) {
		time.Sleep(10 * time.Second)
		if codes := burst(400, 40); codes[http.StatusTooManyRequests] == 0 || codes[http.StatusUnauthorized] < 200 || codes[http.StatusServiceUnavailable] > 0 {
			t.Fatalf("400 requests on 40 connections: %v (want the burst of 200 through to the hook, then 429s)", codes)
		}
		time.Sleep(10 * time.Second)
		for i := 0; i < 10; i++ { // a recording's few events, one after another
			if resp := post(t, c13, hookURL, []byte(`{}`)); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("request %d at Zoom's pace: %s", i, resp.Status)
			}
			time.Sleep(150 * time.Millisecond)
		}
	})
	t.Run("a renewal reaches nginx without a restart", func(t *testing.T) {
		s.mustCompose("run", "--rm", "--no-deps", "certbot", "--force-renewal")
		stagetest.Eventually(t, "the renewed certificate on 443", time.Minute, time.Second, func() error {
			leaf, _, err := s.servedCert()
			if err != nil {
				return err
			}
			if leaf.SerialNumber.Cmp(issued.SerialNumber) == 0 {
				return errors.New("still the first certificate")
			}
			issued = leaf
			return nil
		})
		if n := restarts(t, "nginx"); n != "0" {
			t.Errorf("nginx restarted %s times", n)
		}
	})
	t.Run("down and up keep the broker's data; a replay makes no second copy", func(t *testing.T) {
		// The work queues empty as their work is done, so they are compared once
		// nothing is in flight; the other streams only grow.
		var before map[string]uint64
		stagetest.Eventually(t, "the work queues drained", time.Minute, time.Second, func() error {
			m, err := s.streamsErr()
			if err == nil && (m[events.StreamFetchJobs] > 0 || m[events.StreamChunks] > 0) {
				err = fmt.Errorf("still queued: %v", m)
			}
			before = m
			return err
		})
		st, _ := s.state()
		s.mustCompose("down")
		s.mustCompose("up", "-d", "--no-build")
		stagetest.Eventually(t, "the broker back", 2*time.Minute, time.Second, func() error { _, err := s.streamsErr(); return err })
		after := s.streams(t)
		t.Logf("messages before down %v, after up %v", before, after)
		for name, n := range before {
			if after[name] < n {
				t.Errorf("stream %s: %d messages before down, %d after up", name, n, after[name])
			}
		}
		stagetest.Eventually(t, "nginx with the same certificate", time.Minute, time.Second, func() error {
			leaf, _, err := s.servedCert()
			if err == nil && leaf.SerialNumber.Cmp(issued.SerialNumber) != 0 {
				err = fmt.Errorf("serving %s, not the certificate from before down", leaf.Subject)
			}
			return err
		})
		// The stand-ins restarted empty-handed; the broker's job records must
		// stop a redelivery from archiving (and trashing) again.
		delivery.RequestID = standins.NewZoomRequestID()
		stagetest.Eventually(t, "the hook taking a redelivery", time.Minute, time.Second, func() error {
			status, _, err := zoom.Send(context.Background(), delivery)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("status %d", status)
			}
			return err
		})
		time.Sleep(10 * time.Second)
		now, err := s.state()
		if err != nil {
			t.Fatal(err)
		}
		if len(now.Drive) != 1 || len(now.Trash) != 0 || now.Served != 0 { // only the archive folder
			t.Fatalf("after a redelivery of an archived recording: drive %v, trash %q, %d bytes fetched (before down: %d files)",
				now.Drive, now.Trash, now.Served, len(st.Drive))
		}
	})
	t.Run("logrotate keeps a week of the stack's logs", func(t *testing.T) { s.logrotate(t, c13) })
}

// sameFiles: Drive holds each of Zoom's files exactly once, byte for byte.
func sameFiles(st standins.State) error {
	want, got := map[string]int{}, map[string]int{}
	for _, f := range st.Zoom {
		want[fmt.Sprintf("%s/%d", f.MD5, f.Size)]++
	}
	for _, f := range st.Drive {
		if f.MD5 != "" { // folders have none
			got[fmt.Sprintf("%s/%d", f.MD5, f.Size)]++
		}
	}
	if fmt.Sprint(want) != fmt.Sprint(got) {
		return fmt.Errorf("Zoom's files %v, Drive's %v", want, got)
	}
	return nil
}

// streams is each JetStream stream's message count, from the broker's metrics.
func (s *stack) streams(t *testing.T) map[string]uint64 {
	m, err := s.streamsErr()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// They are read from a container on bus: the broker is on that internal network
// alone, where no port is published.
func (s *stack) streamsErr() (map[string]uint64, error) {
	b, err := exec.Command("podman", "run", "--rm", "--network", project+"_bus", "localhost/debian-slim:bookworm", "timeout", "5", "bash", "-c",
		"exec 3<>/dev/tcp/"+brokerIP+"/9100 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("the broker's metrics from bus: %v %s", err, b)
	}
	out := map[string]uint64{}
	for _, m := range regexp.MustCompile(`(?m)^zoomarchive_broker_stream_messages\{stream="([^"]+)"\} (\d+)$`).FindAllStringSubmatch(string(b), -1) {
		var n uint64
		fmt.Sscan(m[2], &n)
		out[m[1]] = n
	}
	if len(out) == 0 {
		return nil, errors.New("no streams yet")
	}
	return out, nil
}

// deployCheck runs deploy/check as docs/install.md says, with the test's compose project
// and nginx's address for the domain (which no DNS here knows).
func (s *stack) deployCheck(t *testing.T) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + s.pebble + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	roots, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := os.WriteFile(filepath.Join(s.dir, "pebble-roots.pem"), roots, 0o644); err != nil {
		t.Fatal(err)
	}
	nginx := strings.TrimSpace(podman(t, "inspect", "--format", `{{(index .NetworkSettings.Networks "`+project+`_edge").IPAddress}}`, container("nginx")))
	cmd := exec.Command("deploy/check")
	cmd.Dir = s.root
	cmd.Env = append(os.Environ(), "HOOK_CHECK_CONNECT="+nginx+":443", fmt.Sprintf(
		"COMPOSE=docker compose -p %s --env-file %s -f compose.yaml -f deploy/stack/compose.stack.yaml", project, filepath.Join(s.dir, "compose.env")))
	out, err := cmd.CombinedOutput()
	t.Logf("deploy/check:\n%s", out)
	if err != nil || !strings.Contains(string(out), "check: the deployment is ready") {
		t.Fatalf("deploy/check: %v", err)
	}
	for _, want := range []string{"hook: ok   Zoom's URL validation through https://" + domain, "fetch: ok   Zoom: the app's scopes",
		"upload: ok   Drive: folder", "notify: ok   Gmail", "nats: ok   broker"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("deploy/check says nothing like %q", want)
		}
	}
}

// consoleCommands runs docs/operating.md's console block as the operator does on
// the droplet, nats being `docker compose run --rm nats`, with key for <key>.
func (s *stack) consoleCommands(t *testing.T, key string) {
	block, err := docs.Block("operating.md", "console-commands")
	if err != nil {
		t.Fatal(err)
	}
	compose := fmt.Sprintf("docker compose -p %s --env-file %s -f compose.yaml -f deploy/stack/compose.stack.yaml",
		project, filepath.Join(s.dir, "compose.env"))
	ran := 0
	for _, line := range strings.Split(block, "\n") {
		if !strings.HasPrefix(line, "nats ") {
			continue
		}
		line, _, _ = strings.Cut(line, " # ")
		line = strings.ReplaceAll(line, "<key>", key)
		cmd := exec.Command("bash", "-c", `nats() { `+compose+` run --rm -T nats "$@"; }; `+line)
		cmd.Dir = s.root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", line, err, out)
			continue
		}
		ran++
		if strings.Contains(line, "kv get") && !strings.Contains(string(out), `"state":"verified"`) {
			t.Errorf("%s shows:\n%s", line, out)
		}
	}
	if ran < 4 {
		t.Errorf("ran %d console commands from docs/operating.md", ran)
	}
}

// fault makes the Zoom stand-in refuse what f says (POST), or stop refusing (DELETE).
func (s *stack) fault(t *testing.T, method string, f standins.Fault) {
	t.Helper()
	b, _ := json.Marshal(f)
	req, _ := http.NewRequest(method, "http://"+s.statePort+"/faults", bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s /faults: %s", method, resp.Status)
	}
}

// sees fails for each of forbidden in service's environment or mounts, and for
// the Zoom secrets, the Google keys (each its stage's; the key admin's no running
// container's) and the broker's own side unless service holds them.
func (s *stack) sees(t *testing.T, service string, forbidden ...string) {
	t.Helper()
	holders := map[string][]string{"ZOOM_WEBHOOK_SECRET": {"hook"}, "zoom-webhook-secret": {"hook"}, "ZOOM_CLIENT_SECRET": {"fetch"},
		"zoom-client-secret": {"fetch"}, "google-upload": {"upload"}, "google-fetch": {"fetch"}, "google-notify": {"notify"},
		"google-key-admin": {}, "nats/broker": {"broker"}}
	for f, who := range holders {
		if !slices.Contains(who, service) {
			forbidden = append(forbidden, f)
		}
	}
	seen := podman(t, "inspect", "--format", "{{json .Config.Env}} {{json .Mounts}}", container(service))
	for _, f := range forbidden {
		if strings.Contains(seen, f) {
			t.Errorf("%s can see %s", service, f)
		}
	}
}

// isolation: what a container reaches is what its networks reach. nginx is on
// edge alone, certbot on acme alone, the hook on bus and edge, fetch on bus and
// egress, the broker on bus alone; a fresh container on each network then tries
// the broker's client and monitoring ports: only bus reaches the client port, no
// network the monitoring port (it listens inside the broker's container). bus has
// no route out: from it, the stand-ins on egress (the stack's internet) are out
// of reach. A peer counts as reached by what it answers (the broker's INFO line,
// its monitoring's server_id, the stand-ins' state), not by a connection alone:
// a host may hand connections to unknown addresses to a proxy of its own.
func (s *stack) isolation(t *testing.T) {
	for svc, want := range map[string]string{"nginx": "edge", "certbot": "acme", "hook": "bus edge", "fetch": "bus egress", "broker": "bus"} {
		var got []string
		for _, n := range strings.Fields(podman(t, "inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", container(svc))) {
			got = append(got, strings.TrimPrefix(n, project+"_"))
		}
		sort.Strings(got)
		if strings.Join(got, " ") != want {
			t.Errorf("%s is on %q, want %q", svc, got, want)
		}
	}
	ip := strings.TrimSpace(podman(t, "inspect", "--format", `{{(index .NetworkSettings.Networks "`+project+`_bus").IPAddress}}`, container("broker")))
	client := peer{port: "4222", answer: "INFO {"}
	monitoring := peer{port: "8222", say: `GET /varz HTTP/1.0\r\n\r\n`, answer: `"server_id"`}
	for _, c := range []struct {
		network string
		peer    peer
		reach   bool
	}{
		{"edge", client, false}, {"edge", monitoring, false}, {"acme", client, false}, {"acme", monitoring, false},
		{"egress", client, false}, {"egress", monitoring, false}, {"bus", client, true}, {"bus", monitoring, false},
	} {
		if reached := c.peer.probe(t, c.network, ip); reached != c.reach {
			t.Errorf("from the %s network, the broker's %s:%s: reached %v, want %v", c.network, ip, c.peer.port, reached, c.reach)
		}
	}
	outside := strings.TrimSpace(podman(t, "inspect", "--format", `{{(index .NetworkSettings.Networks "`+project+`_egress").IPAddress}}`, container("standins")))
	state := peer{port: "8440", say: `GET /state HTTP/1.0\r\n\r\n`, answer: `"google_keys"`}
	for network, reach := range map[string]bool{"bus": false, "egress": true} {
		if reached := state.probe(t, network, outside); reached != reach {
			t.Errorf("from the %s network, the stand-ins at %s:%s (outside bus): reached %v, want %v", network, outside, state.port, reached, reach)
		}
	}
}

// peer is a port and what it answers to say (printf's escapes).
type peer struct{ port, say, answer string }

// probe tells whether a fresh container on network gets p's answer from ip.
func (p peer) probe(t *testing.T, network, ip string) bool {
	t.Helper()
	out, err := exec.Command("podman", "run", "--rm", "--network", project+"_"+network, "localhost/debian-slim:bookworm",
		"timeout", "8", "bash", "-c", "exec 3<>/dev/tcp/"+ip+"/"+p.port+" || exit 0; printf '"+p.say+"' >&3; timeout 3 cat <&3").CombinedOutput()
	if strings.Contains(string(out), "Error:") {
		t.Fatalf("the probe itself failed: %v %s", err, out)
	}
	got := strings.TrimSpace(string(out))
	if len(got) > 120 {
		got = got[:120] + "..."
	}
	t.Logf("from %s to %s:%s: %q", network, ip, p.port, got)
	return strings.Contains(string(out), p.answer)
}

// hookCannotVerify: with the hook's credentials, from the hook's network, writing
// a file job as verified (what makes fetch trash a recording) is refused, and the
// job is not there for the operator to see.
func (s *stack) hookCannotVerify(t *testing.T, key string) {
	ip := strings.Fields(podman(t, "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container("broker")))[0]
	// natscli in the console's image, on the hook's way to the broker (the bus
	// network), with the hook's file or (to look) the operator's.
	natsAs := func(identity string, args ...string) ([]byte, error) {
		return exec.Command("podman", append([]string{"run", "--rm", "--network", project + "_bus", "-e", "HOME=/tmp", "-e", "USER=nats", "--tmpfs", "/tmp",
			"-v", filepath.Join(s.dir, "secrets/nats", identity+".creds") + ":/creds:ro", "localhost/zoomarchive/nats:latest",
			"--creds", "/creds", "-s", "nats://" + ip + ":4222", "--timeout", "3s"}, args...)...).CombinedOutput()
	}
	// The write a key-value put makes, as a raw publish (the hook may not even look
	// the bucket up): the broker refuses it by name.
	out, _ := natsAs("hook", "pub", "$KV.ARCHIVE_JOBS.file."+key, `{"key":"`+key+`","state":"verified"}`)
	if !strings.Contains(string(out), `Permissions Violation for Publish to "$KV.ARCHIVE_JOBS.file.`+key+`"`) {
		t.Fatalf("the hook's identity writing a verified job:\n%s", out)
	}
	t.Logf("refused as it should be: %s", strings.TrimSpace(string(out)))
	if out, err := natsAs("operator", "kv", "get", "ARCHIVE_JOBS", "file."+key); err == nil || !strings.Contains(string(out), "key not found") {
		t.Fatalf("the operator, looking for the job (%v):\n%s", err, out)
	}
	if st, err := s.state(); err != nil || len(st.Trash) != 0 {
		t.Fatalf("trash calls %q (%v)", st.Trash, err)
	}
}

// logrotate runs deploy/logrotate's configuration, moved onto the test's folders,
// with its own state file: forced, it rotates nginx's live logs (which nginx
// keeps writing) and containers' logs; unforced, it removes what is older than 7 days.
func (s *stack) logrotate(t *testing.T, c *http.Client) {
	src, err := os.ReadFile(filepath.Join(s.root, "deploy/logrotate/zoomarchive"))
	if err != nil {
		t.Fatal(err)
	}
	logs := filepath.Join(s.dir, "logs")
	conf := strings.NewReplacer("/var/log/zoomarchive", logs,
		"/var/lib/docker/containers", filepath.Join(s.dir, "docker"),
		"/var/lib/containers", filepath.Join(s.dir, "podman")).Replace(string(src))
	for _, line := range strings.Split(conf, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "/") && !strings.HasPrefix(f[0], s.dir) {
			t.Fatalf("the configuration names a path this test does not move: %s", line)
		}
	}
	confFile := s.write("logrotate.conf", conf, 0o644)
	containerLog := s.write("docker/abc/abc-json.log", `{"log":"hello\n"}`+"\n", 0o640)
	podmanLog := s.write("podman/storage/overlay-containers/abc/userdata/ctr.log", "hello\n", 0o640)
	rotate := func(force bool) {
		args := []string{"-s", filepath.Join(s.dir, "logrotate.state"), confFile}
		if force {
			args = append([]string{"-f"}, args...)
		}
		if out, err := exec.Command("logrotate", args...).CombinedOutput(); err != nil {
			t.Fatalf("logrotate %v: %v\n%s", args, err, out)
		}
	}
	access := filepath.Join(logs, "nginx/access.log")
	logLine := func() {
		post(t, c, "https://"+domain+"/zoom/webhook", []byte("{}"))
		stagetest.Eventually(t, "a line in nginx's access.log", 10*time.Second, time.Second, func() error {
			if fi, err := os.Stat(access); err != nil || fi.Size() == 0 {
				return fmt.Errorf("access.log empty (%v)", err)
			}
			return nil
		})
	}
	if fi, err := os.Stat(access); err != nil || fi.Size() == 0 {
		t.Fatalf("nginx's access log in LOG_DIR: %v", err)
	}
	rotate(true)
	for _, f := range []string{access + ".1", containerLog + ".1", podmanLog + ".1"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("not rotated: %v", err)
		}
	}
	logLine() // nginx writes on into the truncated file
	rotate(true)
	if _, err := os.Stat(access + ".2.gz"); err != nil {
		t.Errorf("the older rotation is not compressed: %v", err)
	}
	// A week and a half of rotated files, one of 3 days, then a later day's
	// normal run: logrotate checks maxage when it rotates a non-empty log, so
	// nginx writes a line and the state file's last rotations are set back.
	old := time.Now().Add(-10 * 24 * time.Hour)
	for i := 3; i <= 6; i++ {
		p := s.write(fmt.Sprintf("logs/nginx/access.log.%d.gz", i), "old", 0o640)
		os.Chtimes(p, old, old)
	}
	recent := time.Now().Add(-3 * 24 * time.Hour)
	os.Chtimes(access+".2.gz", recent, recent)
	stateFile := filepath.Join(s.dir, "logrotate.state")
	b, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	s.write("logrotate.state", regexp.MustCompile(`" \d+-\d+-\d+-\d+:\d+:\d+`).ReplaceAllString(string(b), `" 2000-1-1-0:0:0`), 0o644)
	logLine()
	rotate(false)
	left, _ := filepath.Glob(filepath.Join(logs, "nginx/access.log.*"))
	kept := 0
	for _, f := range left {
		fi, _ := os.Stat(f)
		if fi.ModTime().Before(time.Now().Add(-7 * 24 * time.Hour)) {
			t.Errorf("kept past 7 days: %s", f)
		} else {
			kept++
		}
	}
	if kept < 3 { // today's two rotations and the 3-day-old one
		t.Errorf("rotations younger than a week removed: %d left, %q", kept, left)
	}
}

// notRestarted returns a check that fails for each of services the engine
// restarted since the call.
func notRestarted(t *testing.T, services ...string) (check func()) {
	before := map[string]string{}
	for _, svc := range services {
		before[svc] = restarts(t, svc)
	}
	return func() {
		for svc, n := range before {
			if now := restarts(t, svc); now != n {
				t.Errorf("%s restarted: %s times before, %s after", svc, n, now)
			}
		}
	}
}

// restarts is how often the engine restarted a service's container.
func restarts(t *testing.T, service string) string {
	return strings.TrimSpace(podman(t, "inspect", "--format", "{{.RestartCount}}", container(service)))
}

// peakMemory is the most a container's cgroup has held (page cache included),
// for the log: compose.yaml's limits are sized by it.
func peakMemory(t *testing.T, name string) string {
	b, err := os.ReadFile(cgroupFile(t, name, "memory.peak", "memory.max_usage_in_bytes"))
	if err != nil {
		return err.Error()
	}
	var n float64
	fmt.Sscan(string(b), &n)
	return fmt.Sprintf("%.1f MiB", n/(1<<20))
}

// cgroupFile is a file of the container's memory cgroup: v2 names it, or v1.
func cgroupFile(t *testing.T, name, v2, v1 string) string {
	pid := strings.TrimSpace(podman(t, "inspect", "--format", "{{.State.Pid}}", name))
	cg, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(cg), "\n") {
		f := strings.SplitN(line, ":", 3)
		switch {
		case len(f) != 3:
		case f[1] == "memory": // cgroup v1
			return "/sys/fs/cgroup/memory" + f[2] + "/" + v1
		case f[0] == "0" && f[1] == "": // v2
			return "/sys/fs/cgroup" + f[2] + "/" + v2
		}
	}
	return ""
}

// stackMemory samples what the containers hold together, every half second,
// until the returned stop: the highest sum with page cache and without it (the
// cgroups' anonymous memory, which no pressure gives back).
func stackMemory(t *testing.T, services []string) (stop func() (total, anon float64)) {
	type files struct{ current, stat string }
	where := func() map[string]files {
		m := map[string]files{}
		for _, svc := range services {
			m[svc] = files{cgroupFile(t, container(svc), "memory.current", "memory.usage_in_bytes"), cgroupFile(t, container(svc), "memory.stat", "memory.stat")}
		}
		return m
	}
	done, result := make(chan struct{}), make(chan [2]float64)
	go func() {
		fs := where()
		var best [2]float64
		for {
			var sum [2]float64
			lost := false
			for _, f := range fs {
				b, err := os.ReadFile(f.current)
				stat, serr := os.ReadFile(f.stat)
				if err != nil || serr != nil {
					lost = true // a container restarted: its cgroup moved
					continue
				}
				var n float64
				fmt.Sscan(string(b), &n)
				sum[0] += n
				for _, line := range strings.Split(string(stat), "\n") {
					if k, v, _ := strings.Cut(line, " "); k == "anon" || k == "rss" {
						fmt.Sscan(v, &n)
						sum[1] += n
					}
				}
			}
			best[0], best[1] = max(best[0], sum[0]), max(best[1], sum[1])
			if lost {
				fs = where()
			}
			select {
			case <-done:
				result <- best
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() (float64, float64) {
		close(done)
		r := <-result
		return r[0] / (1 << 20), r[1] / (1 << 20)
	}
}

// tls11Handshake tries a TLS 1.1 handshake with the CBC suites TLS 1.1 has.
func tls11Handshake(addr string) error {
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: domain, InsecureSkipVerify: true,
		MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}})
	if err != nil {
		return err
	}
	return conn.Close()
}

func get(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func post(t *testing.T, c *http.Client, url string, body []byte) *http.Response {
	t.Helper()
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
