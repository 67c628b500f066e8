// Command standins runs the stand-ins of Zoom, Google's token endpoint, Drive and
// Gmail on loopback for make dev and make demo: it writes the settings that point
// the stages at them (an env file), a service-account key per stage and one for
// the key admin (identities), and a recording.completed body for a meeting the
// Zoom stand-in holds.
// With STANDINS_DEMO set it also plays Zoom's part (demo.go); stack.go is how the
// compose stack test runs it in a container. Not for production.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/standins"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Getenv("STANDINS_DEMO") != ""); err != nil {
		fmt.Fprintln(os.Stderr, "standins:", err)
		os.Exit(1)
	}
}

// world is the stand-ins and the recording they hold.
type world struct {
	zoom  *standins.Zoom
	token *standins.GoogleToken
	drive *standins.Drive
	gmail *standins.Gmail
	rec   events.Recording
	body  []byte // its recording.completed
}

func run(ctx context.Context, getenv func(string) string, demo bool) error {
	dir := getenv("STANDINS_DIR")
	if dir == "" {
		dir = "data/dev"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	public := getenv("STANDINS_PUBLIC") != ""
	if public {
		if err := setPublic(getenv); err != nil {
			return err
		}
	}
	files := recordingFiles(demo || public)
	if size := getenv("STANDINS_MP4_SIZE"); size != "" { // a longer archive, for a measurement
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("STANDINS_MP4_SIZE: %q is not a number of bytes", size)
		}
		files[0].Size = n
	}
	w := &world{zoom: standins.NewZoom()} // Zoom first: the port order stack.go names
	defer w.zoom.Close()
	var err error
	if w.token, err = googleToken(getenv("STANDINS_GOOGLE_KEY")); err != nil {
		return fmt.Errorf("STANDINS_GOOGLE_KEY: %w", err)
	}
	defer w.token.Close()
	if err := identities(w.token, getenv("STANDINS_GOOGLE_KEYS"), dir); err != nil {
		return fmt.Errorf("STANDINS_GOOGLE_KEYS: %w", err)
	}
	w.drive, w.gmail = standins.NewDrive(w.token), standins.NewGmail(w.token)
	defer w.drive.Close()
	defer w.gmail.Close()
	root := w.drive.AddFolder("Zoom archive", true)
	w.rec = w.zoom.AddRecording(events.Recording{
		UUID: "dev/Recording+Uuid==", ID: 81234567890, HostEmail: "host@example.org", Topic: "Rehearsal: The Cherry Orchard, act 2",
		Type: 8, StartTime: time.Now().Add(-2 * time.Hour).Truncate(time.Minute), Timezone: "Europe/Helsinki", Duration: 95,
	}, files...)
	if rate := getenv("STANDINS_ZOOM_RATE"); rate != "" { // bytes/s, so that a transfer lasts
		n, err := strconv.ParseInt(rate, 10, 64)
		if err != nil {
			return fmt.Errorf("STANDINS_ZOOM_RATE: %w", err)
		}
		w.zoom.SetRate(n)
	}
	d, err := standins.NewDelivery(events.EventRecordingCompleted, map[string]any{"account_id": w.zoom.AccountID, "object": w.rec}, "")
	if err != nil {
		return err
	}
	w.body = d.Body
	if err := os.WriteFile(filepath.Join(dir, "recording.completed.json"), d.Body, 0o600); err != nil {
		return err
	}
	env := map[string]string{
		"ZOOM_ACCOUNT_ID": w.zoom.AccountID, "ZOOM_CLIENT_ID": w.zoom.ClientID, "ZOOM_CLIENT_SECRET": w.zoom.ClientSecret,
		"ZOOM_API_URL": w.zoom.APIURL(), "ZOOM_OAUTH_URL": w.zoom.OAuthURL(), "ZOOM_DOWNLOAD_HOSTS": "127.0.0.1",
		"GOOGLE_KEYS_DIR": dir, "GOOGLE_KEY_ADMIN_CREDENTIALS": filepath.Join(dir, "google-key-admin.json"), "DRIVE_FOLDER_ID": root, "GOOGLE_API_URL": w.drive.URL(), "GOOGLE_IAM_URL": w.token.IAMURL(),
		"GMAIL_SENDER": "archive@example.org", "NOTIFY_TO": "admins@example.org", "GMAIL_API_URL": w.gmail.URL(),
		"DRIVE_SHARE_HOST": "commenter", "DRIVE_SHARE_DOMAINS": "example.org",
	}
	if demo && !public { // the stages run on this host and read the file
		rules := filepath.Join(dir, "rules.hcl")
		if err := os.WriteFile(rules, []byte(demoRules), 0o600); err != nil {
			return err
		}
		env["DRIVE_LAYOUT_RULES"] = rules
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lines []byte
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf("%s=%s\n", k, env[k])...)
	}
	envFile := filepath.Join(dir, "standins.env")
	if err := os.WriteFile(envFile+".tmp", lines, 0o600); err != nil {
		return err
	}
	if err := os.Rename(envFile+".tmp", envFile); err != nil { // appears whole: deploy/run waits for it
		return err
	}
	defer os.Remove(envFile)
	if addr := getenv("STANDINS_STATE_ADDR"); addr != "" {
		if err := w.serveState(ctx, addr); err != nil {
			return err
		}
	}
	if demo {
		return w.demo(ctx)
	}
	w.log(map[string]any{"msg": "stand-ins ready", "zoom": w.zoom.APIURL(), "drive": w.drive.URL(), "env": envFile})
	return w.report(ctx)
}

// recordingFiles: a small meeting for make dev, a paused rehearsal with every kind
// of file, a few hundred MB, for make demo.
func recordingFiles(demo bool) []standins.FileSpec {
	if !demo {
		return []standins.FileSpec{
			{ID: "dev-mp4", FileType: "MP4", Extension: "MP4", RecordingType: "shared_screen_with_speaker_view", Size: 48 << 20},
			{ID: "dev-m4a", FileType: "M4A", Extension: "M4A", RecordingType: "audio_only", Size: 6 << 20},
			{ID: "dev-vtt", FileType: "TRANSCRIPT", Extension: "VTT", RecordingType: "audio_transcript", Text: rehearsalVTT},
			{ID: "dev-chat", FileType: "CHAT", Extension: "TXT", RecordingType: "chat_file", Size: 2 << 10},
		}
	}
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
	seg2 := start.Add(50 * time.Minute)
	return []standins.FileSpec{
		{ID: "demo-mp4-1", FileType: "MP4", Extension: "MP4", RecordingType: "shared_screen_with_speaker_view", Size: 180 << 20, Start: start, End: seg2.Add(-5 * time.Minute)},
		{ID: "demo-mp4-2", FileType: "MP4", Extension: "MP4", RecordingType: "shared_screen_with_speaker_view", Size: 120 << 20, Start: seg2, End: seg2.Add(40 * time.Minute)},
		{ID: "demo-m4a", FileType: "M4A", Extension: "M4A", RecordingType: "audio_only", Size: 24 << 20},
		{ID: "demo-vtt", FileType: "TRANSCRIPT", Extension: "VTT", RecordingType: "audio_transcript", Text: rehearsalVTT},
		{ID: "demo-chat", FileType: "CHAT", Extension: "TXT", RecordingType: "chat_file", Size: 3 << 10},
		{ID: "demo-timeline", FileType: "TIMELINE", Extension: "JSON", RecordingType: "timeline", Size: 12 << 10},
		{ID: "demo-aino", FileType: "M4A", Extension: "M4A", Size: 9 << 20, Participant: "Aino Virtanen"},
		{ID: "demo-mikko", FileType: "M4A", Extension: "M4A", Size: 8 << 20, Participant: "Mikko Korhonen"},
	}
}

// demoRules puts the demo's rehearsal in its production's folders.
const demoRules = `# make demo: the season's productions (docs/pipeline.md, upload: layout by production).
production "The Cherry Orchard" {
  topic            = "(?i)cherry orchard"
  folder           = "Productions/{production}/{date} {time} {topic}"
  share_with_group = "cherry-orchard-cast@example.org"
  tags             = { season = "2026" }
}
`

// rehearsalVTT is the rehearsal's transcript as Zoom writes it; the demo finds the
// video by its words.
const rehearsalVTT = `WEBVTT

1
00:00:04.200 --> 00:00:09.800
Aino Virtanen: From the top of act two, please. Everyone on the bench by the old chapel.

2
00:00:10.000 --> 00:00:15.500
Mikko Korhonen: Listen. Far off, a sound like a string snapping in the sky, dying away.

3
00:00:15.600 --> 00:00:18.000
Mikko Korhonen: Something fell in a mine shaft, perhaps.

4
00:00:19.100 --> 00:00:24.900
Aino Virtanen: Hold the silence after the sound. Three seconds, then the line.
`

func (w *world) log(v map[string]any) { json.NewEncoder(os.Stdout).Encode(v) }

// report says what Drive, Gmail and Zoom's delete endpoint receive, as it happens.
func (w *world) report(ctx context.Context) error {
	seen := map[string]bool{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, f := range w.drive.Files() {
			if !seen[f.ID] {
				seen[f.ID] = true
				w.log(map[string]any{"msg": "drive received", "path": w.drive.Path(f.ID), "bytes": f.Size, "md5": f.MD5})
			}
		}
		for i, m := range w.gmail.Sent() {
			if key := fmt.Sprint("mail", i); !seen[key] {
				seen[key] = true
				w.log(map[string]any{"msg": "gmail sent", "to": m.Header.Get("To"), "subject": m.Subject})
				fmt.Println(m.Text)
			}
		}
		for _, c := range w.zoom.Calls() {
			if c.Method == "DELETE" && !seen[c.Path] {
				seen[c.Path] = true
				w.log(map[string]any{"msg": "zoom recording removed", "path": c.Path, "query": c.Query, "status": c.Status})
			}
		}
	}
}

// identities are one Google identity per job, as docs/install.md makes them: the
// token endpoint's first account is upload's (delegated Drive alone); fetch's
// (Drive metadata) and notify's (gmail.send) are added, and the key admin's,
// which may manage the three's keys and is delegated nothing. keys, when set
// (the stack test), names the files of the other three as JOB=FILE,...; else
// they are made here and written, with upload's, into dir as google-JOB.json
// (make run gives each stage its own from GOOGLE_KEYS_DIR).
func identities(g *standins.GoogleToken, keys, dir string) error {
	g.Delegate(g.Email, serviceaccount.DriveScope)
	scopes := map[string][]string{events.IdentityFetch: {serviceaccount.DriveMetadataScope},
		events.IdentityNotify: {serviceaccount.GmailSendScope}, keyAdmin: nil}
	files := map[string][]byte{events.IdentityUpload: g.KeyJSON()}
	if keys == "" {
		for _, job := range []string{events.IdentityFetch, events.IdentityNotify, keyAdmin} {
			files[job] = g.AddAccount(job+"@standin-project.iam.gserviceaccount.com", scopes[job]...)
		}
	}
	for _, pair := range strings.Split(keys, ",") {
		if pair == "" {
			continue
		}
		job, file, _ := strings.Cut(pair, "=")
		sc, ok := scopes[job]
		if !ok {
			return fmt.Errorf("%q: want JOB=FILE, JOB fetch, notify or %s", pair, keyAdmin)
		}
		b, err := os.ReadFile(file)
		if err == nil {
			err = g.AddAccountKey(b, sc...)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		files[job] = b
	}
	if k, err := serviceaccount.ReadKeyFile(files[events.IdentityNotify]); err == nil {
		g.AllowKeyViewer(k.Account, k.Account) // its key's age, for the digest
	}
	if k, err := serviceaccount.ReadKeyFile(files[keyAdmin]); err == nil {
		g.AllowKeyAdmin(k.Account, slices.DeleteFunc(g.Accounts(), func(a string) bool { return a == k.Account })...)
	}
	if keys != "" {
		return nil
	}
	for job, b := range files {
		if err := os.WriteFile(filepath.Join(dir, "google-"+job+".json"), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// keyAdmin names the key-admin identity.
const keyAdmin = "key-admin"
