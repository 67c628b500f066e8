package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"zoomarchive/docs"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// docs/operating.md's operator commands, run as written with natscli against a
// broker that holds three events the hook stored.
func TestOperatorCommandsInGuide(t *testing.T) {
	cli := natsCLI(t)
	block, err := docs.Block("operating.md", "operator-commands")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, line := range strings.Split(block, "\n") {
		if strings.HasPrefix(line, "nats ") {
			cmds = append(cmds, line)
		}
	}
	if len(cmds) < 8 {
		t.Fatalf("found %d operator commands in docs/operating.md", len(cmds))
	}

	natsURL, h := newStack(t)
	for _, topic := range []string{"Alpha rehearsal", "Beta rehearsal", "Gamma rehearsal"} {
		body := strings.Replace(recordingBody, "Probe: Der Kirschgarten – Akt 2 ✓", topic, 1)
		d := standins.Delivery{Body: []byte(body), RequestID: standins.NewZoomRequestID()}
		if status, _, err := h.zoom.Send(context.Background(), d); err != nil || status != 200 {
			t.Fatalf("%s: %d %v", topic, status, err)
		}
	}

	// What each command must show, by the start of its line.
	expect := []struct {
		prefix   string
		has, not []string
	}{
		{"nats stream ls", []string{"ZOOM_EVENTS"}, nil},
		{"nats stream info", []string{"Messages: 3", "Duplicate Window: 2h0m0s", "Maximum Age: 30d"}, nil},
		{"nats stream subjects", []string{"zoom.event.recording.completed", "3"}, nil},
		{"nats stream get ZOOM_EVENTS 1", []string{"Zm-Request-Id", "Alpha rehearsal"}, []string{"Beta"}},
		{"nats sub --stream ZOOM_EVENTS --all", []string{"Alpha", "Beta", "Gamma"}, nil},
		{"nats sub --stream ZOOM_EVENTS --start-sequence 2", []string{"Beta", "Gamma"}, []string{"Alpha"}},
		{"nats sub --stream ZOOM_EVENTS --since 1h", []string{"Alpha", "Beta", "Gamma"}, nil},
		{"nats consumer next ZOOM_EVENTS replay", []string{"Beta", "Gamma"}, []string{"Alpha"}},
	}
	seen := map[string]bool{}
	for _, cmd := range cmds {
		c := exec.Command("sh", "-c", cmd)
		c.Env = append(os.Environ(), "NATS_URL="+natsURL, "NATS_CREDS="+stagetest.Creds(t, natsURL, events.IdentityOperator), "PATH="+filepath.Dir(cli)+":"+os.Getenv("PATH"))
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		for _, e := range expect {
			if !strings.HasPrefix(cmd, e.prefix) {
				continue
			}
			seen[e.prefix] = true
			for _, s := range e.has {
				if !strings.Contains(string(out), s) {
					t.Errorf("%s: output lacks %q:\n%s", cmd, s, out)
				}
			}
			for _, s := range e.not {
				if strings.Contains(string(out), s) {
					t.Errorf("%s: output has %q:\n%s", cmd, s, out)
				}
			}
		}
	}
	for _, e := range expect {
		if !seen[e.prefix] {
			t.Errorf("docs/operating.md has no command starting %q", e.prefix)
		}
	}
}

// natsCLI finds natscli: $NATS_CLI, the repo's .tools/ (make tools) or PATH.
func natsCLI(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("NATS_CLI"); p != "" {
		return p
	}
	if p, err := filepath.Abs("../../.tools/nats"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	t.Fatal("natscli v0.5.0 not found: run 'make tools' (it installs it into .tools/) or set NATS_CLI")
	return ""
}
