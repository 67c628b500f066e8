// The operator's path without a droplet: the settings file the droplet gets is
// what compose reads, deploy/check warns about the rest, the shipped project holds
// every file compose and the droplet's scripts use, and make deploy / make
// rollback (deploy/ship, deploy/install) run their real steps against this host,
// with the container engine, ssh, cloud-init and go played by small scripts that
// record what they are asked.
package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// composeReads is every variable compose.yaml interpolates.
func composeReads(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range regexp.MustCompile(`[^$]\$\{([A-Z_][A-Z0-9_]*)`).FindAllStringSubmatch(string(b), -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	sort.Strings(names)
	return names
}

// The droplet's .env template lists exactly what compose passes on, each with
// words above it: a setting there that compose drops would do nothing.
func TestProductionSettingsAreWhatComposeReads(t *testing.T) {
	b, err := os.ReadFile("production.env.example")
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	lines := strings.Split(string(b), "\n")
	setting := regexp.MustCompile(`^#?([A-Z_][A-Z0-9_]*)=`)
	for i, line := range lines {
		m := setting.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		listed = append(listed, m[1])
		// Words above it, or above the settings it is grouped with.
		j := i - 1
		for j >= 0 && setting.MatchString(lines[j]) && !strings.HasPrefix(lines[j], "#") {
			j--
		}
		if j < 0 || !strings.HasPrefix(lines[j], "#") {
			t.Errorf("%s has no words above it", m[1])
		}
	}
	sort.Strings(listed)
	if want := composeReads(t); !slices.Equal(listed, want) {
		t.Errorf("production.env.example lists\n%v\ncompose.yaml reads\n%v", listed, want)
	}
}

// stubs writes small programs into a folder put first on PATH: they stand in for
// ssh (the droplet is this host; uname -m answers as given), cloud-init, the
// container engine and compose (images are files under state/, compose accepts
// .env once ZOOM_AFTER_ARCHIVE is chosen, each stage's check passes), and go
// (a "binary" says the GOOS/GOARCH it was built for and the release). Each
// records its calls in state/log.
func stubs(t *testing.T, machine string) (bin, state string) {
	t.Helper()
	bin, state = t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(state, "images"), 0o755)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/usr/bin/env bash\necho \""+name+" $*\" >>"+state+"/log\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("ssh", `shift
[ "$*" = "uname -m" ] && { echo `+machine+`; exit; }
exec bash -c "$*"
`)
	write("cloud-init", "exit 0\n")
	write("docker", `img() { echo "`+state+`/images/${1//\//_}"; }
case $1 in
image) [ -f "$(img "$3")" ] ;;
build) ctx=${@: -1}; while [ "$1" != -t ]; do shift; done
	if [ -f "$ctx/app" ]; then cp "$ctx/app" "$(img "$2")"; else echo "built from $ctx" >"$(img "$2")"; fi ;;
tag) cp "$(img "$2")" "$(img "$3")" ;;
rmi) rm "$(img "$2")" ;;
run) while [ "$1" != -v ]; do shift; done; d=${2%%:*}; touch "$d/broker/operator.jwt" "$d/hook.creds" ;;
compose) shift
	case "$*" in
	"config -q") grep -q '^ZOOM_AFTER_ARCHIVE=.' .env || { echo 'required variable ZOOM_AFTER_ARCHIVE is missing a value: set ZOOM_AFTER_ARCHIVE in .env to trash, delete or keep'; exit 1; } ;;
	*" check") p=${@: -2:1}; echo "$p: ok   stub" ;;
	*"nats stream ls --names") echo ZOOM_EVENTS ;;
	esac ;;
esac
`)
	write("go", `case $1 in
env) echo "${GOMODCACHE:-$GOPATH/pkg/mod}" ;; # as go answers GOMODCACHE
build) while [ "$1" != -o ]; do shift; done; mkdir -p "$(dirname "$2")"; echo "$GOOS/$GOARCH $RELEASE $(basename "$2")" >"$2" ;;
install) d=$GOPATH/bin/linux_$GOARCH; p=${@: -1}; mkdir -p "$d"; echo "$GOOS/$GOARCH $RELEASE nats ${p#*@} $GOMODCACHE" >"$d/nats" ;;
*) exit 1 ;;
esac
`)
	return bin, state
}

// shipped is every file deploy/files names (folders expanded), relative to the
// repository.
func shipped(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("files")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		filepath.Walk(filepath.Join("..", line), func(p string, info os.FileInfo, err error) error {
			if err != nil {
				t.Errorf("deploy/files: %v", err)
				return nil
			}
			if !info.IsDir() {
				files = append(files, strings.TrimPrefix(p, "../"))
			}
			return nil
		})
	}
	return files
}

// Everything the droplet reads comes with the project: what compose.yaml mounts
// or builds, what cloud-init lays down, and what deploy/install and deploy/check
// use there.
func TestShippedFilesHoldEverythingTheDropletReads(t *testing.T) {
	files := shipped(t)
	has := func(p string) bool {
		return slices.ContainsFunc(files, func(f string) bool { return f == p || strings.HasPrefix(f, p+"/") })
	}
	compose, _ := os.ReadFile("../compose.yaml")
	var need []string
	for _, m := range regexp.MustCompile(`(?m)(?:- \./([^:\s]+):|context: (\S+))`).FindAllStringSubmatch(string(compose), -1) {
		need = append(need, m[1]+m[2])
	}
	tf, _ := os.ReadFile("../terraform/main.tf")
	block := regexp.MustCompile(`(?s)project_files = \[(.*?)\]`).FindStringSubmatch(string(tf))
	if block == nil {
		t.Fatal("no project_files in terraform/main.tf")
	}
	for _, m := range regexp.MustCompile(`"([^"]+)"`).FindAllStringSubmatch(block[1], -1) {
		need = append(need, m[1])
	}
	for _, script := range []string{"install", "check"} {
		b, _ := os.ReadFile(script)
		for _, m := range regexp.MustCompile(`\b(deploy/[a-z][a-z./-]*[a-z]|compose\.yaml|VERSION)\b`).FindAllStringSubmatch(string(b), -1) {
			if m[1] != "deploy/ship" { // the laptop's half
				need = append(need, m[1])
			}
		}
	}
	if len(need) < 10 {
		t.Fatalf("found only %v", need)
	}
	for _, p := range need {
		if !has(p) {
			t.Errorf("%s is read on the droplet but deploy/files does not ship it", p)
		}
	}
}

// deploy/check warns of each .env line nothing reads, and fails nothing for it.
func TestCheckWarnsOfUnreadSettings(t *testing.T) {
	bin, _ := stubs(t, "x86_64")
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "deploy"), 0o755)
	for _, f := range []string{"compose.yaml", "deploy/check"} {
		b, _ := os.ReadFile(filepath.Join("..", f))
		os.WriteFile(filepath.Join(dir, f), b, 0o755)
	}
	os.WriteFile(filepath.Join(dir, ".env"), []byte("DOMAIN=archive.tuta.fi\n# NOTIFY_TO=x\nNOTIFY_DIGEST_AT=09:00\nexport FETCH_RECONCILE_DAYS=60\nZOOM_AFTER_ARCHIVE=keep\n"), 0o600)
	cmd := exec.Command("bash", filepath.Join(dir, "deploy/check"))
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/check: %v\n%s", err, out)
	}
	for _, name := range []string{"NOTIFY_DIGEST_AT", "FETCH_RECONCILE_DAYS"} {
		if !strings.Contains(string(out), "WARN .env sets "+name+", which compose does not pass on") {
			t.Errorf("no warning for %s:\n%s", name, out)
		}
	}
	if n := strings.Count(string(out), "WARN"); n != 2 {
		t.Errorf("%d warnings, want 2:\n%s", n, out)
	}
}

// make deploy on a fresh droplet, again once the settings are in, then make
// rollback: the builds are for the droplet's architecture, the first deploy
// starts nothing until compose accepts the settings, an update keeps the release
// before (images and project files), and rollback brings it back.
func TestShipInstallsUpdatesAndRollsBack(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed")
	}
	bin, state := stubs(t, "aarch64")
	dir := t.TempDir()
	run := func(release string, args ...string) string {
		t.Helper()
		cmd := exec.Command("./ship", append(args, "tuta@droplet")...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "GO=go", "HOME="+state,
			"SHIP_SUDO=", "SHIP_DIR="+dir, "RELEASE="+release, "GOPATH="+state+"/go", "GOMODCACHE=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("deploy/ship %v (release %s): %v\n%s", args, release, err, out)
		}
		return string(out)
	}
	image := func(ref string) string {
		b, _ := os.ReadFile(filepath.Join(state, "images", "localhost_zoomarchive_"+strings.ReplaceAll(ref, "/", "_")))
		return string(b)
	}
	log := func() string { b, _ := os.ReadFile(filepath.Join(state, "log")); return string(b) }
	read := func(f string) string { b, _ := os.ReadFile(filepath.Join(dir, f)); return string(b) }

	out := run("A")
	if !strings.Contains(out, "not started, compose needs: required variable ZOOM_AFTER_ARCHIVE") {
		t.Errorf("a first deploy without settings does not say what is missing:\n%s", out)
	}
	if l := log(); !strings.Contains(l, "cloud-init status --wait") || strings.Contains(l, "compose up") {
		t.Errorf("first deploy: waited for cloud-init, started nothing? log:\n%s", l)
	}
	for _, f := range shipped(t) {
		want, _ := os.ReadFile(filepath.Join("..", f))
		if f != "VERSION" && read(f) != string(want) {
			t.Errorf("%s on the droplet is not the repository's", f)
		}
	}
	if example, _ := os.ReadFile("production.env.example"); read(".env") != string(example) {
		t.Error(".env was not made from deploy/production.env.example")
	}
	if _, err := os.Stat(filepath.Join(dir, "secrets/nats/hook.creds")); err != nil || strings.Count(log(), "docker run") != 1 {
		t.Errorf("the broker's identities were not made once: %v", err)
	}
	for _, n := range []string{"broker", "hook", "fetch", "upload", "notify"} {
		if got := image(n + ":latest"); got != "linux/arm64 A "+n+"\n" {
			t.Errorf("%s:latest holds %q, want the linux/arm64 build of release A", n, got)
		}
	}
	// natscli is built in a GOPATH of its own, from the usual module cache.
	if got := image("nats:latest"); !strings.HasPrefix(got, "linux/arm64 A nats v") || !strings.HasSuffix(got, " "+state+"/go/pkg/mod\n") {
		t.Errorf("nats:latest holds %q", got)
	}
	if image("nginx:latest") == "" || image("certbot:latest") == "" || image("broker:previous") != "" {
		t.Error("nginx and certbot not built, or a previous release where there was none")
	}

	// Release A's own compose file, to see it come back; the settings chosen.
	os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(read("compose.yaml")+"# release A\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ".env"), []byte(strings.Replace(read(".env"), "ZOOM_AFTER_ARCHIVE=\n", "ZOOM_AFTER_ARCHIVE=keep\n", 1)), 0o600)
	env := read(".env")

	out = run("B")
	if l := log(); !strings.Contains(l, "docker compose up -d") || !strings.Contains(l, "docker compose run --rm certbot") ||
		!strings.Contains(out, "check: the deployment is ready") {
		t.Errorf("the update did not start and check the stack:\n%s\nlog:\n%s", out, l)
	}
	if image("hook:latest") != "linux/arm64 B hook\n" || image("hook:previous") != "linux/arm64 A hook\n" {
		t.Errorf("after the update hook:latest %q, hook:previous %q", image("hook:latest"), image("hook:previous"))
	}
	if strings.HasSuffix(read("compose.yaml"), "# release A\n") || read(".env") != env {
		t.Error("the update left release A's compose file, or touched .env")
	}

	out = run("", "--rollback")
	if image("hook:latest") != "linux/arm64 A hook\n" || image("hook:previous") != "linux/arm64 B hook\n" {
		t.Errorf("after the rollback hook:latest %q, hook:previous %q\n%s", image("hook:latest"), image("hook:previous"), out)
	}
	if !strings.HasSuffix(read("compose.yaml"), "# release A\n") || read(".env") != env {
		t.Error("the rollback did not bring back release A's compose file, or touched .env")
	}
	if strings.Count(log(), "docker compose up -d") != 2 || !strings.Contains(out, "check: the deployment is ready") {
		t.Errorf("the rollback did not start and check release A:\n%s", out)
	}
	if n := strings.Count(log(), "docker run"); n != 1 {
		t.Errorf("the broker's identities were made %d times; once is right", n)
	}
	// A second rollback is the way forward again.
	run("", "--rollback")
	if image("hook:latest") != "linux/arm64 B hook\n" || strings.HasSuffix(read("compose.yaml"), "# release A\n") {
		t.Error("rolling back the rollback did not bring release B back")
	}
}
