// Package docs holds the guides. Their commands are run as written by the tests
// (Block), so that a guide cannot drift from what the programs and compose expect.
package docs

import (
	"embed"
	"fmt"
	"strings"
)

//go:embed *.md
var guides embed.FS

// Block is the text between <!-- name --> and <!-- /name --> in a guide, with the
// lines of its code fences left out: the commands as the operator pastes them.
func Block(guide, name string) (string, error) {
	b, err := guides.ReadFile(guide)
	if err != nil {
		return "", err
	}
	_, rest, ok := strings.Cut(string(b), "<!-- "+name+" -->")
	text, _, closed := strings.Cut(rest, "<!-- /"+name+" -->")
	if !ok || !closed {
		return "", fmt.Errorf("%s has no <!-- %s --> block", guide, name)
	}
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(line, "```") {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n") + "\n", nil
}
