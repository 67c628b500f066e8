// The guides say what the code does: the Zoom scopes install.md lists are the ones
// fetch checks for, its secret commands place the files compose reads, and
// operating.md has a row for every alert notify can mail, under the title the mail
// carries.
package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"zoomarchive/docs"
)

func block(t *testing.T, guide, name string) string {
	t.Helper()
	text, err := docs.Block(guide, name)
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// The secrets as install.md places them, pasted as written (the values in place
// of PASTE-…, a folder for /opt/zoomarchive, the laptop's ssh run here): every
// secret file compose.yaml names but the broker's identities (deploy/install
// makes those) is there, readable by root and the containers' group alone, and
// the laptop's copies of the keys are gone.
func TestInstallSecretsAsWritten(t *testing.T) {
	dir, laptop := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil { // cloud-init's
		t.Fatal(err)
	}
	jobs := []string{"upload", "fetch", "notify", "key-admin"}
	for _, job := range jobs {
		os.WriteFile(filepath.Join(laptop, "google-"+job+".json"), []byte(`{"type":"service_account","job":"`+job+`"}`+"\n"), 0o600)
	}
	sudo := "sudo "
	if os.Getuid() == 0 {
		sudo = ""
	}
	paste := strings.NewReplacer("/opt/zoomarchive", dir, "sudo ", sudo, "ssh tuta@203.0.113.7 ", "bash -c ",
		"PASTE-ACCOUNT-ID", "acc-1", "PASTE-CLIENT-ID", "cli-2", "PASTE-SECRET-TOKEN", "tok-3", "PASTE-CLIENT-SECRET", "sec-4")
	for _, name := range []string{"install-secrets", "install-key"} {
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", paste.Replace(block(t, "install.md", name)))
		cmd.Dir = laptop
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("install.md's %s block: %v\n%s", name, err, out)
		}
	}
	compose, err := os.ReadFile("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"fetch.env": "ZOOM_ACCOUNT_ID=acc-1\nZOOM_CLIENT_ID=cli-2\n", "zoom-webhook-secret": "tok-3\n",
		"zoom-client-secret": "sec-4\n"}
	for _, job := range jobs {
		want["google-"+job+".json"] = `{"type":"service_account","job":"` + job + `"}` + "\n"
	}
	named := regexp.MustCompile(`\$\{SECRETS_DIR:-\./secrets\}/([\w.-]+)\n`).FindAllStringSubmatch(string(compose), -1)
	if len(named) != len(want) {
		t.Errorf("compose.yaml names %d secret files outside nats/, the guide places %d: %v", len(named), len(want), named)
	}
	for _, m := range named {
		p := filepath.Join(dir, "secrets", m[1])
		b, err := os.ReadFile(p)
		if err != nil || string(b) != want[m[1]] {
			t.Errorf("secrets/%s: %q, %v; want %q", m[1], b, err, want[m[1]])
			continue
		}
		info, _ := os.Stat(p)
		mode, gid := info.Mode().Perm(), info.Sys().(*syscall.Stat_t).Gid
		if m[1] == "fetch.env" && mode != 0o600 || m[1] != "fetch.env" && (mode != 0o440 || gid != 65532) {
			t.Errorf("secrets/%s: mode %o group %d", m[1], mode, gid)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(laptop, "google-*.json")); len(left) > 0 {
		t.Errorf("the laptop's keys are still there: %v", left)
	}
}

func TestZoomScopesAreWhatFetchChecks(t *testing.T) {
	src, err := os.ReadFile("../stages/fetch/check.go")
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for _, m := range regexp.MustCompile(`\{"([a-z_:]+)", "([a-z_:]+)", "`).FindAllStringSubmatch(string(src), -1) {
		code = append(code, m[1]+" "+m[2])
	}
	var guide []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_:]+)` \\| `([a-z_:]+)` \\|").FindAllStringSubmatch(block(t, "install.md", "zoom-scopes"), -1) {
		guide = append(guide, m[1]+" "+m[2])
	}
	slices.Sort(code)
	slices.Sort(guide)
	if len(code) < 4 || !slices.Equal(slices.Compact(code), guide) {
		t.Errorf("install.md lists the scopes\n%v\nfetch checks\n%v", guide, code)
	}
}

func TestEveryAlertHasARow(t *testing.T) {
	table := block(t, "operating.md", "mails")
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../shared/events/events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := 0
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok || len(spec.Values) != len(spec.Names) {
			return true
		}
		for i, name := range spec.Names {
			lit, ok := spec.Values[i].(*ast.BasicLit)
			if !ok || !strings.HasPrefix(name.Name, "Alert") || lit.Kind != token.STRING {
				continue
			}
			kind, _ := strconv.Unquote(lit.Value)
			kinds++
			if !strings.Contains(table, "| `"+kind+"` |") {
				t.Errorf("operating.md has no row for the alert %s (%s)", kind, name.Name)
			}
		}
		return true
	})
	if kinds < 10 {
		t.Fatalf("found %d alert kinds in shared/events", kinds)
	}
	// The titles the mails carry, so that the admin finds the row by the subject.
	mails, err := os.ReadFile("../stages/notify/mails.go")
	if err != nil {
		t.Fatal(err)
	}
	titles := regexp.MustCompile(`(?m)^\s+events\.Alert\w+:\s+"([^"]+)",`).FindAllStringSubmatch(string(mails), -1)
	titles = append(titles, regexp.MustCompile(`return "(stage " \+ stage \+ " [^"]+)"`).FindAllStringSubmatch(string(mails), -1)...)
	if len(titles) < 10 {
		t.Fatalf("found %d alert titles in stages/notify/mails.go", len(titles))
	}
	for _, m := range titles {
		title := strings.Replace(m[1], `stage " + stage + "`, "stage …", 1)
		if !strings.Contains(table, "**zoomarchive alert:** "+title+" |") {
			t.Errorf("operating.md has no row titled %q", title)
		}
	}
}

// Each decision install.md asks for lands in a setting the droplet's .env
// template has, so that the admin finds the line to fill in.
func TestDecisionsAreProductionSettings(t *testing.T) {
	guide, err := os.ReadFile("install.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(guide), "## Decide first")
	table, _, _ = strings.Cut(table, "\n\n**")
	example, err := os.ReadFile("../deploy/production.env.example")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile("`([A-Z][A-Z0-9_]{3,})`").FindAllStringSubmatch(table, -1)
	if len(names) < 8 {
		t.Fatalf("found %d settings in install.md's decisions", len(names))
	}
	for _, m := range names {
		if !regexp.MustCompile(`(?m)^` + m[1] + `=`).Match(example) {
			t.Errorf("install.md asks for %s, which deploy/production.env.example does not have", m[1])
		}
	}
}
