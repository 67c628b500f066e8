package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testSettings = []Setting{
	{Name: "TOKEN", Required: true, Secret: true, Usage: "the token"},
	{Name: "ADDR", Default: ":8080", Usage: "where to listen"},
	{Name: "WAIT", Default: "2s", Usage: "how long"},
	{Name: "SIZE", Default: "1MiB", Usage: "how much"},
	{Name: "LIST", Default: "a, b,,c", Usage: "which"},
	{Name: "COUNT", Default: "1", Usage: "how many"},
}

type read struct {
	token, addr string
	wait        time.Duration
	size        int64
	list        []string
	count       int
}

func runWith(t *testing.T, env map[string]string, args ...string) (read, string, error) {
	t.Helper()
	var r read
	var out bytes.Buffer
	err := Run(context.Background(), "stage", "test stage", testSettings, append([]string{"stage"}, args...),
		func(k string) string { return env[k] }, &out, &out, func(_ context.Context, v *Values) error {
			r = read{v.String("TOKEN"), v.String("ADDR"), v.Duration("WAIT"), v.Bytes("SIZE"), v.List("LIST"), v.Int("COUNT", 1)}
			return v.Err()
		})
	return r, out.String(), err
}

func TestDefaultsEnvAndFlags(t *testing.T) {
	r, _, err := runWith(t, map[string]string{"TOKEN": "t1", "WAIT": "5m"}, "--addr", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if r.token != "t1" || r.addr != "127.0.0.1:1" || r.wait != 5*time.Minute || r.size != 1<<20 || r.count != 1 {
		t.Errorf("%+v", r)
	}
	if strings.Join(r.list, "|") != "a|b|c" {
		t.Errorf("list %q", r.list)
	}
	// A flag wins over the variable of the same name.
	if r, _, _ := runWith(t, map[string]string{"TOKEN": "env"}, "--token", "flag"); r.token != "flag" {
		t.Errorf("flag lost to env: %q", r.token)
	}
}

func TestSecretFromFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	r, _, err := runWith(t, map[string]string{"TOKEN_FILE": file})
	if err != nil || r.token != "from-file" {
		t.Fatalf("%q %v", r.token, err)
	}
	_, _, err = runWith(t, map[string]string{"TOKEN_FILE": file, "TOKEN": "x"})
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("both set: %v", err)
	}
	_, _, err = runWith(t, map[string]string{"TOKEN_FILE": file + ".missing"})
	if err == nil || !strings.Contains(err.Error(), "cannot read TOKEN_FILE") {
		t.Errorf("missing file: %v", err)
	}
}

func TestEveryProblemInOneError(t *testing.T) {
	_, _, err := runWith(t, map[string]string{"WAIT": "-1s", "SIZE": "lots", "COUNT": "0"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"4 setting(s)", "TOKEN: required (or TOKEN_FILE", "WAIT:", "SIZE:", "COUNT:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	_, out, err := runWith(t, map[string]string{"TOKEN": "hunter2", "SIZE": "bad"})
	if err == nil || strings.Contains(err.Error()+out, "hunter2") {
		t.Fatalf("err %v out %q", err, out)
	}
}

func TestHelpListsSettings(t *testing.T) {
	_, out, err := runWith(t, nil, "-h")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--token", "env TOKEN or TOKEN_FILE; required", "--addr", "default :8080"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	if _, _, err := runWith(t, map[string]string{"TOKEN": "x"}, "stray"); err == nil {
		t.Error("stray argument accepted")
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1MiB": 1 << 20, "64MiB": 64 << 20, "512KiB": 512 << 10, "1GB": 1e9, "1048576": 1 << 20, "8 MiB": 8 << 20, "10B": 10} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0", "-1MiB", "1TB", "MiB", "1.5MiB", "99999999999GiB"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCheckSettingsOnly(t *testing.T) {
	started := false
	run := func(env map[string]string) (string, error) {
		var out bytes.Buffer
		err := Run(context.Background(), "stage", "test stage", testSettings, []string{"stage", "--check-settings"},
			func(k string) string { return env[k] }, &out, &out, func(_ context.Context, v *Values) error {
				v.String("TOKEN")
				if err := v.Err(); err != nil {
					return err
				}
				started = true
				return nil
			})
		return out.String(), err
	}
	if out, err := run(map[string]string{"TOKEN": "x"}); err != nil || started || !strings.Contains(out, "settings ok") {
		t.Errorf("good settings: %q %v, started %v", out, err, started)
	}
	if _, err := run(nil); err == nil || !strings.Contains(err.Error(), "TOKEN: required") || started {
		t.Errorf("missing settings: %v, started %v", err, started)
	}
}

// A program stopped by its signal while it waits to be up (for the broker, say)
// exits as cleanly as one stopped later; a failure that is not the stop still counts.
func TestStoppedWhileStartingIsClean(t *testing.T) {
	for name, want := range map[string]bool{"stopped": true, "failed": false} {
		ctx, cancel := context.WithCancel(context.Background())
		err := Run(ctx, "stage", "test stage", nil, []string{"stage"}, func(string) string { return "" }, io.Discard, io.Discard,
			func(ctx context.Context, _ *Values) error {
				if name == "stopped" {
					cancel()
					return fmt.Errorf("waiting for the broker: %w", ctx.Err())
				}
				defer cancel()
				return errors.New("the broker refused the credentials")
			})
		if clean := err == nil; clean != want {
			t.Errorf("%s: Run returned %v", name, err)
		}
	}
}

// Every program says which release it is, without its settings (the admin
// compares it with CHANGELOG.md before and after an update).
func TestVersion(t *testing.T) {
	defer func(v string) { Version = v }(Version)
	Version = "1.2.3+abcdef0"
	_, out, err := runWith(t, nil, "--version")
	if err != nil || strings.TrimSpace(out) != "stage version 1.2.3+abcdef0" {
		t.Fatalf("--version: %v, %q", err, out)
	}
}
