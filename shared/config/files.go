package config

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

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
