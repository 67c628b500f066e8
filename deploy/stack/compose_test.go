//go:build stack

package stack

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// compose.yaml alone, as on the droplet, with deploy/env.example filled in the way
// README's Deploy says: what docker compose makes of it.
func TestComposeFile(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile("../env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"hook.env", "fetch.env", "google-service-account.json"} {
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
	// The settings env.example leaves for the operator, and test values for them.
	required := map[string]string{"DRIVE_FOLDER_ID": "1AbCfolder", "GMAIL_SENDER": "archive@tuta.fi", "NOTIFY_TO": "admins@tuta.fi"}
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
			Image       string
			Restart     string
			MemLimit    any `json:"mem_limit"`
			Ports       []any
			Environment map[string]*string
			Secrets     []struct{ Source string }
			Healthcheck *struct{ Test []string }
			Logging     *struct {
				Driver  string
				Options map[string]string
			}
		}
		Volumes map[string]any
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var names []string
	for n := range cfg.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "certbot fetch hook nats nginx notify upload" {
		t.Errorf("services %q (ddclient stays commented out)", names)
	}
	for name, s := range cfg.Services {
		if s.Restart != "unless-stopped" || s.MemLimit == nil || s.Logging == nil || s.Logging.Options["max-size"] == "" {
			t.Errorf("%s: restart %q, mem_limit %v, logging %+v", name, s.Restart, s.MemLimit, s.Logging)
		}
		if name != "certbot" && s.Healthcheck == nil {
			t.Errorf("%s has no healthcheck", name)
		}
		published := len(s.Ports) > 0
		if published != (name == "nginx") {
			t.Errorf("%s: ports %v (only nginx is published)", name, s.Ports)
		}
		var secrets []string
		for _, sec := range s.Secrets {
			secrets = append(secrets, sec.Source)
		}
		if want := slices.Contains([]string{"upload", "notify"}, name); want != slices.Contains(secrets, "google-service-account") {
			t.Errorf("%s: secrets %q", name, secrets)
		}
	}
	if _, ok := cfg.Volumes["nats-data"]; !ok {
		t.Error("no named volume for JetStream")
	}
	if env := cfg.Services["nats"].Environment; env["BROKER_CONFIG"] == nil || *env["BROKER_CONFIG"] != "/etc/nats/nats.conf" {
		t.Errorf("the broker does not run nats/nats.conf: %v", env)
	}
}
