// The guides say what the code does: the Zoom scopes install.md lists are the ones
// fetch checks for, and operating.md has a row for every alert notify can mail,
// under the title the mail carries.
package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// block is the text between <!-- name --> and <!-- /name --> in a guide.
func block(t *testing.T, file, name string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- "+name+" -->")
	text, _, closed := strings.Cut(rest, "<!-- /"+name+" -->")
	if !ok || !closed {
		t.Fatalf("%s has no <!-- %s --> block", file, name)
	}
	return text
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
