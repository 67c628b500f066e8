//go:build stack

package stack

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// compose.yaml alone, as on the droplet, with deploy/production.env.example
// filled in the way docs/install.md says: what docker compose makes of it.
func TestComposeFile(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile("../production.env.example")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "nats/broker"), 0o700)
	for _, f := range []string{"zoom-webhook-secret", "zoom-client-secret", "fetch.env", "google-upload.json", "google-fetch.json", "google-notify.json", "google-key-admin.json", "nats/hook.creds", "nats/fetch.creds",
		"nats/upload.creds", "nats/notify.creds", "nats/operator.creds"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := func(env string) (string, error) {
		envFile := filepath.Join(dir, "env")
		if err := os.WriteFile(envFile, []byte(env+"SECRETS_DIR="+dir+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("docker", "compose", "-f", "../../compose.yaml", "--env-file", envFile, "config", "--format", "json").CombinedOutput()
		return string(out), err
	}
	// The settings the example leaves for the operator, and test values for them.
	required := map[string]string{"DRIVE_FOLDER_ID": "1AbCfolder", "GMAIL_SENDER": "archive@tuta.fi", "NOTIFY_TO": "admins@tuta.fi",
		"ACME_EMAIL": "admins@tuta.fi", "ZOOM_AFTER_ARCHIVE": "trash"}
	fill := func(except string) string {
		env := string(example)
		for name, v := range required {
			if name != except {
				env = strings.Replace(env, name+"=\n", name+"="+v+"\n", 1)
			}
		}
		return env
	}
	filled := fill("")

	// One at a time: with several missing, compose names whichever it meets first.
	for name := range required {
		t.Run(name+" missing is named", func(t *testing.T) {
			out, err := config(fill(name))
			if err == nil || !strings.Contains(out, "set "+name+" in .env") {
				t.Fatalf("compose with %s empty: %v\n%s", name, err, out)
			}
		})
	}

	out, err := config(filled)
	if err != nil {
		t.Fatalf("docker compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]struct {
			Image    string
			Restart  string
			MemLimit any `json:"mem_limit"`
			Ports    []struct {
				HostIP string `json:"host_ip"`
				Target int
			}
			Networks    map[string]any
			CapAdd      []string `json:"cap_add"`
			CapDrop     []string `json:"cap_drop"`
			ReadOnly    bool     `json:"read_only"`
			Environment map[string]*string
			Secrets     []struct{ Source string }
			Healthcheck *struct{ Test []string }
			Logging     *struct {
				Driver  string
				Options map[string]string
			}
		}
		Volumes  map[string]any
		Networks map[string]struct{ Internal bool }
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var names []string
	for n := range cfg.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "broker fetch hook nginx notify upload" {
		t.Errorf("services %q (ddclient stays commented out; certbot, rotate-key and the nats console are tools)", names)
	}
	// Who shares a network with whom: nginx reaches the hook alone, the broker only
	// the stages; the broker's network has no route out (internal), and only the
	// stages that call Zoom and Google are on egress.
	wantNets := map[string]string{"broker": "bus", "hook": "bus edge", "fetch": "bus egress", "upload": "bus egress", "notify": "bus egress", "nginx": "edge"}
	for name, internal := range map[string]bool{"bus": true, "edge": false, "egress": false} {
		if n, ok := cfg.Networks[name]; !ok || n.Internal != internal {
			t.Errorf("network %s: defined %v, internal %v, want internal %v", name, ok, n.Internal, internal)
		}
	}
	for name, s := range cfg.Services {
		if s.Restart != "unless-stopped" || s.MemLimit == nil || s.Logging == nil || s.Logging.Options["max-size"] == "" {
			t.Errorf("%s: restart %q, mem_limit %v, logging %+v", name, s.Restart, s.MemLimit, s.Logging)
		}
		if s.Healthcheck == nil {
			t.Errorf("%s has no healthcheck", name)
		}
		for _, p := range s.Ports {
			if name != "nginx" && p.HostIP != "127.0.0.1" {
				t.Errorf("%s: port %d published on %q (only nginx's are public; metrics on the host's loopback)", name, p.Target, p.HostIP)
			}
		}
		var nets []string
		for n := range s.Networks {
			nets = append(nets, n)
		}
		sort.Strings(nets)
		if strings.Join(nets, " ") != wantNets[name] {
			t.Errorf("%s: networks %q, want %q", name, nets, wantNets[name])
		}
		// Docker publishes no port of a container on internal networks only.
		if !slices.ContainsFunc(nets, func(n string) bool { return !cfg.Networks[n].Internal }) && len(s.Ports) > 0 {
			t.Errorf("%s: on internal networks only, yet publishes %+v (never published)", name, s.Ports)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("%s: read-only %v, cap_drop %q", name, s.ReadOnly, s.CapDrop)
		}
		if name != "nginx" && len(s.CapAdd) > 0 {
			t.Errorf("%s: cap_add %q", name, s.CapAdd)
		}
		var secrets []string
		for _, sec := range s.Secrets {
			secrets = append(secrets, sec.Source)
		}
		for _, id := range []string{"fetch", "upload", "notify", "key-admin"} {
			if has := slices.Contains(secrets, "google-"+id); has != (id == name) {
				t.Errorf("%s: secrets %q (each stage its own Google key only; the key admin's in no running container)", name, secrets)
			}
		}
		for _, id := range []string{"hook", "fetch", "upload", "notify", "operator"} {
			if has := slices.Contains(secrets, "nats-"+id); has != (id == name) {
				t.Errorf("%s: secrets %q (each program its own broker identity only)", name, secrets)
			}
		}
	}
	if _, ok := cfg.Volumes["nats-data"]; !ok {
		t.Error("no named volume for JetStream")
	}
	if env := cfg.Services["broker"].Environment; env["BROKER_CONFIG"] == nil || *env["BROKER_CONFIG"] != "/etc/nats/nats.conf" {
		t.Errorf("the broker does not run nats/nats.conf: %v", env)
	}

	// rotate-key, a tool: upload's broker identity, the key admin's key, the
	// stages' key files and its own volume, nothing else of the secrets; the one
	// capability to write a 0440 file.
	// certbot, a tool: on acme alone (none of the stack), its two volumes, no
	// secret, no capability.
	raw, err := exec.Command("docker", "compose", "-f", "../../compose.yaml", "--env-file", filepath.Join(dir, "env"), "--profile", "tools",
		"config", "--format", "json", "rotate-key", "certbot").CombinedOutput()
	if err != nil {
		t.Fatalf("docker compose config rotate-key certbot: %v\n%s", err, raw)
	}
	var tools struct {
		Services map[string]struct {
			CapAdd     []string `json:"cap_add"`
			CapDrop    []string `json:"cap_drop"`
			ReadOnly   bool     `json:"read_only"`
			Networks   map[string]any
			Secrets    []struct{ Source string }
			Volumes    []struct{ Source, Target string }
			Entrypoint []string
			Restart    string
		}
	}
	if err := json.Unmarshal(raw[bytes.IndexByte(raw, '{'):], &tools); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	mounts := func(name string) []string {
		var m []string
		for _, v := range tools.Services[name].Volumes {
			m = append(m, filepath.Base(v.Source)+":"+v.Target)
		}
		return m
	}
	rk := tools.Services["rotate-key"]
	_, onBus := rk.Networks["bus"]
	_, onEgress := rk.Networks["egress"] // Google's IAM API
	if !rk.ReadOnly || !slices.Equal(rk.CapDrop, []string{"ALL"}) || !slices.Equal(rk.CapAdd, []string{"DAC_OVERRIDE"}) ||
		len(rk.Secrets) != 2 || rk.Secrets[0].Source != "nats-upload" || rk.Secrets[1].Source != "google-key-admin" || len(rk.Networks) != 2 || !onBus || !onEgress ||
		!slices.Equal(mounts("rotate-key"), []string{"google-upload.json:/keys/google-upload.json", "google-fetch.json:/keys/google-fetch.json",
			"google-notify.json:/keys/google-notify.json", "google-key-pending:/pending"}) ||
		!slices.Contains(rk.Entrypoint, "rotate-key") || !slices.Contains(rk.Entrypoint, "archive@tuta.fi") {
		t.Errorf("rotate-key: %+v, mounts %q", rk, mounts("rotate-key"))
	}
	cb := tools.Services["certbot"]
	_, onAcme := cb.Networks["acme"]
	if !cb.ReadOnly || !slices.Equal(cb.CapDrop, []string{"ALL"}) || len(cb.CapAdd) > 0 || len(cb.Secrets) > 0 ||
		len(cb.Networks) != 1 || !onAcme || cb.Restart != "no" ||
		!slices.Equal(mounts("certbot"), []string{"letsencrypt:/etc/letsencrypt", "acme-webroot:/var/www/acme"}) {
		t.Errorf("certbot: %+v, mounts %q", cb, mounts("certbot"))
	}
}
