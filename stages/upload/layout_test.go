package main

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// Text from Zoom becomes a Drive name a person can trust: valid UTF-8, no control
// or format characters (U+202E would show "4pm.exe" as "exe.mp4"; U+200B hides
// in plain sight), no slashes, single spaces, at most max runes, never empty.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"Board meeting", "Probe: Der Kirschgarten – Akt 2 ✓", "a/b\\c", "  two   spaces ",
		"rev\u202eexe.mp4", "zero\u200bwidth", "bom\ufeff", "\xff\xfe", "\x00\x1f\x7f", strings.Repeat("é", 300), ""} {
		f.Add(s, 100)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 2 || max > 500 {
			return
		}
		got := cleanName(s, max)
		switch {
		case got == "" || !utf8.ValidString(got):
			t.Fatalf("%q -> %q: empty or not UTF-8", s, got)
		case utf8.RuneCountInString(got) > max:
			t.Fatalf("%q -> %q: more than %d runes", s, got, max)
		case strings.ContainsAny(got, "/\\") || strings.Contains(got, "  ") || strings.TrimSpace(got) != got:
			t.Fatalf("%q -> %q: a slash or spaces left", s, got)
		}
		for _, r := range got {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
				t.Fatalf("%q -> %q: holds %U", s, got, r)
			}
		}
	})
}

func TestCleanNameReplacesFormatCharacters(t *testing.T) {
	for in, want := range map[string]string{
		"Budget\u202e4pm.exe":    "Budget 4pm.exe",
		"zero\u200bwidth":        "zero width",
		"\ufeffRehearsal":        "Rehearsal",
		"Akt 2 ✓ – Kirschgarten": "Akt 2 ✓ – Kirschgarten",
	} {
		if got := cleanName(in, 100); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
