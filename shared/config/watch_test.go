package config

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A watched secret file is reported when its content changes (not when it is
// written unchanged), once when it cannot be read, and again when it can.
func TestWatchFileReportsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first\n")
	var mu sync.Mutex
	var seen []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		WatchFile(ctx, path, 10*time.Millisecond, func(content string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				content = "unreadable"
			}
			seen = append(seen, content)
		})
		close(done)
	}()
	settle := func() { time.Sleep(400 * time.Millisecond) } // a few looks, and the settling
	settle()
	write("first\n") // the same
	settle()
	write("second\r\n")
	settle()
	os.Remove(path)
	settle()
	settle()
	write("third")
	settle()
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"second", "unreadable", "third"}; len(seen) != len(want) || seen[0] != want[0] || seen[1] != want[1] || seen[2] != want[2] {
		t.Fatalf("reported %q, want %q", seen, want)
	}
}
