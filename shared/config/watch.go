package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
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
// `every`, and at once on SIGHUP.
// A file that cannot be read is reported to changed as an error, once until it
// can be read again. It returns when ctx ends.
func WatchFile(ctx context.Context, path string, every time.Duration, changed func(content string, err error)) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	last, _ := os.ReadFile(path) // what the program started with
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
}

// Modified is when the file at path last changed, or zero when it cannot be told:
// the age of a secret that a file holds.
func Modified(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime().UTC().Truncate(time.Second)
}

// WriteAtomic replaces the file at path with b through a file beside it, synced,
// so that a reader or a crash sees the old content or the new, never a part. A
// file it replaces keeps its group (the group a container reads it as); a writer
// that may not give it that group (neither its member nor allowed to chown) gets
// an error and replaces nothing. Mounts of the single file (compose secrets) keep
// the old one: WriteInPlace is for those.
func WriteAtomic(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, nothing is there
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(perm)
	}
	if fi, serr := os.Stat(path); err == nil && serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) != os.Getegid() {
			if cerr := f.Chown(-1, int(st.Gid)); cerr != nil {
				err = fmt.Errorf("%s: cannot keep its group %d (write it as a member of that group): %w", path, st.Gid, cerr)
			}
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteInPlace rewrites the file at path keeping its inode, owner and mode: a
// container that mounts the file itself (compose secrets) sees the new content,
// where a rename would leave it the old. A reader may meet it half written;
// WatchFile takes a file only once it holds still.
func WriteInPlace(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
