package config

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// SecretFile is the file a secret setting is read from (NAME_FILE), or "" when it
// comes from the variable or a flag: only a file can change under a running program.
func (v *Values) SecretFile(name string) string {
	if s, ok := v.settings[name]; !ok || !s.Secret {
		panic("config: " + name + " is not a declared secret")
	}
	return v.getenv(name + "_FILE")
}

// WatchEvery is how often a program looks at its secret and key files.
const WatchEvery = 5 * time.Second

// settle is how long a changed file must keep its content before it is taken.
const settle = 100 * time.Millisecond

// WatchFile calls changed with the file's content, trimmed as String trims it,
// whenever that content changes and holds still for settle: looked at every
// `every`, and at once on SIGHUP, until ctx ends.
// A file that cannot be read is reported to changed as an error, once until it
// can be read again. It reads what the file holds now before it returns, and
// looks on in a goroutine of its own: a change made right after the call is a
// change (read in that goroutine, a write that came first would be taken for
// the content the program started with, and never reported).
func WatchFile(ctx context.Context, path string, every time.Duration, changed func(content string, err error)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	last, _ := os.ReadFile(path) // what the program started with
	go func() {
		defer signal.Stop(hup)
		var lastErr error
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-hup:
			}
			b, err := os.ReadFile(path)
			if err == nil && !bytes.Equal(b, last) {
				// A file written in place (tee) is taken only once it holds still: a
				// read in the middle of the write sees it empty or cut short.
				select {
				case <-ctx.Done():
					return
				case <-time.After(settle):
				}
				if again, err := os.ReadFile(path); err != nil || !bytes.Equal(again, b) {
					continue
				}
			}
			switch {
			case err != nil:
				if lastErr == nil {
					changed("", err)
				}
				lastErr = err
			case lastErr != nil || !bytes.Equal(b, last):
				last, lastErr = b, nil
				changed(strings.TrimRight(string(b), "\r\n"), nil)
			}
		}
	}()
}
