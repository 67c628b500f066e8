//go:build stack

package stack

import (
	"archive/tar"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Each program's image holds its static binary and the broker's empty data
// folder, nothing else (no shell, no libc), runs as 65532, and has CA roots inside
// the binary.
func TestImages(t *testing.T) {
	for _, name := range []string{"broker", "hook", "fetch", "upload", "notify"} {
		t.Run(name, func(t *testing.T) {
			img := "localhost/zoomarchive/" + name + ":latest"
			var cfg []struct {
				Config struct {
					User       string
					Entrypoint []string
				}
			}
			if err := json.Unmarshal([]byte(podman(t, "image", "inspect", img)), &cfg); err != nil || len(cfg) != 1 {
				t.Fatalf("inspect %s: %v", img, err)
			}
			if c := cfg[0].Config; c.User != "65532:65532" || strings.Join(c.Entrypoint, " ") != "/app" {
				t.Errorf("user %q, entrypoint %q", c.User, c.Entrypoint)
			}
			dir := t.TempDir()
			archive := filepath.Join(dir, "image.tar")
			podman(t, "save", "--format", "docker-archive", "-o", archive, img)
			files := imageFiles(t, archive, dir)
			if strings.Join(files, " ") != "app data/" {
				t.Errorf("files in the image: %q, want only app and data/", files)
			}
			app := filepath.Join(dir, "app")
			f, err := elf.Open(app)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
					t.Errorf("/app is dynamically linked")
				}
			}
			info, err := buildinfo.ReadFile(app)
			if err != nil {
				t.Fatal(err)
			}
			roots := false
			for _, d := range info.Deps {
				roots = roots || d.Path == "golang.org/x/crypto/x509roots/fallback"
			}
			if !roots {
				t.Errorf("/app has no CA roots built in (golang.org/x/crypto/x509roots/fallback)")
			}
		})
	}
	if out, err := exec.Command("podman", "run", "--rm", "--entrypoint", "/bin/sh", "localhost/zoomarchive/hook:latest", "-c", "true").CombinedOutput(); err == nil {
		t.Errorf("a shell ran in the hook's image: %s", out)
	}
}

// imageFiles lists the files of every layer of a docker-archive and extracts
// /app into dir.
func imageFiles(t *testing.T, archive, dir string) []string {
	t.Helper()
	var manifest []struct{ Layers []string }
	layers := map[string][]byte{}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if h.Name == "manifest.json" {
			json.Unmarshal(b, &manifest)
		} else {
			layers[h.Name] = b
		}
	}
	if len(manifest) != 1 {
		t.Fatalf("manifest: %v", manifest)
	}
	var files []string
	for _, l := range manifest[0].Layers {
		lr := tar.NewReader(strings.NewReader(string(layers[l])))
		for {
			h, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l, err)
			}
			files = append(files, strings.TrimPrefix(h.Name, "./"))
			if h.Name == "app" || h.Name == "./app" {
				b, _ := io.ReadAll(lr)
				if err := os.WriteFile(filepath.Join(dir, "app"), b, 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	sort.Strings(files)
	return files
}
