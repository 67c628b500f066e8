package config

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A file replaced through WriteAtomic keeps the group a container reads it as.
func TestWriteAtomicKeepsTheGroup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "account.jwt")
	os.WriteFile(path, []byte("old"), 0o640)
	if err := os.Chown(path, -1, 65532); err != nil {
		t.Fatal(err) // root, as make test runs
	}
	if err := WriteAtomic(path, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != 65532 {
		t.Errorf("group %d after the write, want 65532", gid)
	}
}
