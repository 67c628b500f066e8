package config

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
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

// SIGHUP makes the watcher look at once, whatever its interval.
func TestWatchFileLooksAtOnceOnSIGHUP(t *testing.T) {
	keep := make(chan os.Signal, 1) // the test process survives a SIGHUP sent before the watcher listens
	signal.Notify(keep, syscall.SIGHUP)
	defer signal.Stop(keep)
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go WatchFile(ctx, path, time.Hour, func(content string, _ error) {
		select {
		case got <- content:
		default:
		}
	})
	// An hour between looks: only a SIGHUP makes it see a new content. Each try
	// writes another one, whenever the watcher read what it started with.
	deadline := time.After(10 * time.Second)
	for i := 0; ; i++ {
		if err := os.WriteFile(path, []byte(fmt.Sprint("v", i)), 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // settled
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		select {
		case <-got:
			return
		case <-deadline:
			t.Fatal("a SIGHUP did not make the watcher look")
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// A change made right after WatchFile returns is reported: the content the
// program started with is read before it returns (read later, in the watcher's
// goroutine, such a change was taken for the start and never reported; the
// hook's rotation test failed so under load).
func TestWatchFileSeesAChangeRightAfterTheCall(t *testing.T) {
	for i := range 50 {
		path := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(path, []byte("first"), 0o600); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		ctx, cancel := context.WithCancel(context.Background())
		WatchFile(ctx, path, 5*time.Millisecond, func(content string, _ error) {
			select {
			case got <- content:
			default:
			}
		})
		if err := os.WriteFile(path, []byte("second"), 0o600); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-got:
			if c != "second" {
				t.Fatalf("try %d: reported %q, want second", i, c)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("try %d: the change right after the call was never reported", i)
		}
		cancel()
	}
}
