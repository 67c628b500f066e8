//go:build stack

package stack

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zoomarchive/docs"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

const (
	project       = "zoomarchive-stack"
	brokerIP      = "10.89.201.10" // on bus, as compose.stack.yaml fixes it
	domain        = "archive.tuta.test"
	webhookSecret = "stack-webhook-secret"
	// The stand-in Drive's first folder, which cmd/standins makes the archive root.
	driveRoot = "1StandIn000001xYz"
	stageUID  = 65532
)

// stack is one compose project of compose.yaml and compose.stack.yaml.
type stack struct {
	t                              *testing.T
	root, dir                      string            // the repository; the test's files (STACK_DIR)
	http, https, statePort, pebble string            // loopback host:port of nginx, stand-ins, Pebble
	metrics                        map[string]string // each stage's published metrics, host:port
}

// newStack writes everything the stack needs into a fresh folder: the stand-ins'
// CA and certificate, the secrets as an operator places them, Pebble's config and
// compose's .env.
func newStack(t *testing.T) *stack {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, root: root, dir: t.TempDir(),
		http: stagetest.FreeAddr(t), https: stagetest.FreeAddr(t), statePort: stagetest.FreeAddr(t),
		pebble: stagetest.FreeAddr(t), metrics: map[string]string{}}
	if err := os.Chmod(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s.writeTLS()
	s.write("pebble-roots.pem", "", 0o644) // filled in by TestStack once Pebble has issued
	s.writeSecrets()
	s.writePebble()
	if err := os.MkdirAll(filepath.Join(s.dir, "logs/nginx"), 0o755); err != nil { // cloud-init makes it on the droplet
		t.Fatal(err)
	}
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	env := map[string]string{
		"DOMAIN": domain, "ACME_EMAIL": "admins@tuta.test", "ACME_SERVER": "https://pebble:14000/dir",
		"DRIVE_FOLDER_ID": driveRoot, "GMAIL_SENDER": "archive@tuta.test", "NOTIFY_TO": "admins@tuta.test", "ZOOM_AFTER_ARCHIVE": "trash",
		"SECRETS_DIR": filepath.Join(s.dir, "secrets"), "LOG_DIR": filepath.Join(s.dir, "logs"), "STACK_DIR": s.dir,
		"HTTP_PORT": s.http, "HTTPS_PORT": s.https,
		"STATE_PORT": port(s.statePort), "PEBBLE_MGMT_PORT": port(s.pebble),
		"DEBIAN_IMAGE": "localhost/debian-slim:bookworm",
	}
	for _, stage := range []string{"hook", "fetch", "upload", "notify"} {
		s.metrics[stage] = stagetest.FreeAddr(t)
		env[strings.ToUpper(stage)+"_METRICS_PORT"] = port(s.metrics[stage])
	}
	var lines []string
	for k, v := range env {
		lines = append(lines, k+"="+v)
	}
	s.write("compose.env", strings.Join(lines, "\n")+"\n", 0o600)
	return s
}

func (s *stack) write(name, content string, mode os.FileMode) string {
	p := filepath.Join(s.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func pemBlock(typ string, b []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}))
}

// writeTLS makes a CA the stages trust (SSL_CERT_FILE) and the stand-ins'
// certificate for the name standins.
func (s *stack) writeTLS() {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "zoomarchive stack test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		s.t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "standins"}, DNSNames: []string{"standins"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		s.t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	s.write("ca.pem", pemBlock("CERTIFICATE", caDER), 0o644)
	s.write("standins.pem", pemBlock("CERTIFICATE", der), 0o644)
	s.write("standins-key.pem", pemBlock("PRIVATE KEY", keyDER), 0o644)
}

// writeSecrets places the secrets with docs/install.md's commands as written (the
// stand-ins' values pasted in, this folder for /opt/zoomarchive, the laptop's ssh
// run here): the env file root's alone, the secret files readable by root and
// the stages' group.
func (s *stack) writeSecrets() {
	if err := os.MkdirAll(filepath.Join(s.dir, "secrets"), 0o700); err != nil {
		s.t.Fatal(err)
	}
	// One Google identity per job, as docs/install.md makes them on the laptop;
	// upload's account is the stand-in's first.
	laptop := filepath.Join(s.dir, "laptop")
	for i, job := range []string{"upload", "fetch", "notify", "key-admin"} {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			s.t.Fatal(err)
		}
		email := job + "@standin-project.iam.gserviceaccount.com"
		if job == "upload" {
			email = standins.ServiceAccount
		}
		var f map[string]string
		json.Unmarshal(standins.KeyJSON(key, email, "https://standins:8443/token"), &f)
		if job != "upload" { // each account its own ids
			f["private_key_id"], f["client_id"] = "standin-"+job+"-key-1", fmt.Sprintf("2000000000000000000%02d", i)
		}
		b, _ := json.MarshalIndent(f, "", "  ")
		s.write("laptop/google-"+job+".json", string(b), 0o600)
	}
	paste := strings.NewReplacer("/opt/zoomarchive", s.dir, "sudo ", "", "ssh tuta@203.0.113.7 ", "bash -c ",
		"PASTE-ACCOUNT-ID", "standin-account", "PASTE-CLIENT-ID", "standin-client",
		"PASTE-SECRET-TOKEN", webhookSecret, "PASTE-CLIENT-SECRET", "standin-client-secret")
	for _, name := range []string{"install-secrets", "install-key"} {
		commands, err := docs.Block("install.md", name)
		if err != nil {
			s.t.Fatal(err)
		}
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", paste.Replace(commands))
		cmd.Dir = laptop
		if out, err := cmd.CombinedOutput(); err != nil {
			s.t.Fatalf("docs/install.md's %s commands: %v\n%s", name, err, out)
		}
	}
	if err := os.Chmod(filepath.Join(s.dir, "secrets"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	// The broker's identities come later (writeCreds), into folders made as deploy/install does.
	for _, d := range []string{"secrets/nats", "secrets/nats/broker"} {
		p := filepath.Join(s.dir, d)
		if err := os.MkdirAll(p, 0o750); err != nil {
			s.t.Fatal(err)
		}
		if err := os.Chown(p, 0, stageUID); err != nil {
			s.t.Fatal(err)
		}
	}
}

// writeCreds makes the broker's identities as deploy/install does: the broker's
// image writes them (as root, into secrets/nats), then the stages' group may
// read them. A second run refuses to overwrite them.
func (s *stack) writeCreds() {
	dir := filepath.Join(s.dir, "secrets/nats")
	creds := func() (string, error) {
		return s.compose("run", "--rm", "--no-deps", "--user", "0", "-v", dir+":/creds", "broker", "creds", "/creds")
	}
	if out, err := creds(); err != nil {
		s.t.Fatalf("broker creds: %v\n%s", err, out)
	}
	if out, err := exec.Command("chgrp", "-R", fmt.Sprint(stageUID), dir).CombinedOutput(); err != nil {
		s.t.Fatalf("chgrp: %v %s", err, out)
	}
	// Run again, as a repeated deploy step would: refused, nothing changed. (Its exit
	// status is not checked: compose on Podman's API reports 0 for it.)
	before, _ := os.ReadFile(filepath.Join(dir, "hook.creds"))
	if out, _ := creds(); !strings.Contains(out, "already holds credentials") {
		s.t.Fatalf("a second broker creds:\n%s", out)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "hook.creds")); len(before) == 0 || string(after) != string(before) {
		s.t.Fatal("a second broker creds changed hook.creds")
	}
}

// writePebble gives Pebble its TLS files (from its module, PEBBLE_DIR) and a
// config that validates HTTP-01 on port 80, as Let's Encrypt does.
func (s *stack) writePebble() {
	src := os.Getenv("PEBBLE_DIR")
	if src == "" {
		s.t.Fatal("PEBBLE_DIR (Pebble's module folder) is not set; run this test through make stack")
	}
	for _, f := range []string{"certs/localhost/cert.pem", "certs/localhost/key.pem", "certs/pebble.minica.pem"} {
		b, err := os.ReadFile(filepath.Join(src, "test", f))
		if err != nil {
			s.t.Fatal(err)
		}
		s.write("pebble/"+filepath.Base(f), string(b), 0o644)
	}
	s.write("pebble/config.json", `{"pebble": {
  "listenAddress": "0.0.0.0:14000", "managementListenAddress": "0.0.0.0:15000",
  "certificate": "/stack/pebble/cert.pem", "privateKey": "/stack/pebble/key.pem",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false,
  "keyAlgorithm": "ecdsa",
  "profiles": {"default": {"description": "90 days", "validityPeriod": 7776000}}
}}`, 0o644)
}

// compose runs docker compose (v2, on Podman's API through DOCKER_HOST) on the
// project and returns its output.
func (s *stack) compose(args ...string) (string, error) {
	base := []string{"compose", "-p", project, "--env-file", filepath.Join(s.dir, "compose.env"),
		"-f", "compose.yaml", "-f", "deploy/stack/compose.stack.yaml"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append(base, args...)...)
	cmd.Dir = s.root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (s *stack) mustCompose(args ...string) string {
	s.t.Helper()
	out, err := s.compose(args...)
	if err != nil {
		s.t.Fatalf("docker compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// podman runs a podman command and returns its output.
func podman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("podman", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func container(service string) string { return project + "-" + service + "-1" }

// runHealthchecks does what systemd timers do for Podman elsewhere: it runs the
// healthchecks of containers still starting or unhealthy, so that compose's
// depends_on: service_healthy can pass (Podman 4.3 without systemd never runs them).
func runHealthchecks(ctx context.Context) {
	for {
		out, _ := exec.CommandContext(ctx, "podman", "ps", "--filter", "label=com.docker.compose.project="+project,
			"--format", "{{.Names}} {{.Status}}").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if name, status, ok := strings.Cut(line, " "); ok && (strings.Contains(status, "starting") || strings.Contains(status, "unhealthy")) {
				exec.CommandContext(ctx, "podman", "healthcheck", "run", name).Run()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// state asks the stand-ins what they hold.
func (s *stack) state() (standins.State, error) {
	var st standins.State
	resp, err := http.Get("http://" + s.statePort + "/state")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// client talks to nginx as if DNS named it: every dial goes to its loopback port.
func (s *stack) client(roots *x509.CertPool, min, max uint16) *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				target := s.https
				if strings.HasSuffix(addr, ":80") {
					target = s.http
				}
				return (&net.Dialer{}).DialContext(ctx, network, target)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: domain, MinVersion: min, MaxVersion: max, InsecureSkipVerify: roots == nil},
			DisableKeepAlives: true,
		},
	}
}

// servedCert is the certificate nginx presents now.
func (s *stack) servedCert() (*x509.Certificate, []*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.https,
		&tls.Config{ServerName: domain, InsecureSkipVerify: true})
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	chain := conn.ConnectionState().PeerCertificates
	return chain[0], chain[1:], nil
}

// pebbleRoots is Pebble's current root (it makes a new one at every start).
func (s *stack) pebbleRoots() (*x509.CertPool, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + s.pebble + "/roots/0")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("pebble /roots/0: %s", b)
	}
	return pool, nil
}
