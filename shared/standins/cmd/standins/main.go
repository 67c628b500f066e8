// Command standins runs the stand-ins of Zoom, Google's token endpoint, Drive and
// Gmail on loopback for make dev: it writes the settings that point the stages at them
// (an env file), a service-account key for the stand-in token endpoint, and a
// recording.completed body for a meeting the Zoom stand-in holds. Not for production.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"zoomarchive/shared/events"
	"zoomarchive/shared/standins"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv("STANDINS_DIR")); err != nil {
		fmt.Fprintln(os.Stderr, "standins:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string) error {
	if dir == "" {
		dir = "data/dev"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	zoom := standins.NewZoom()
	defer zoom.Close()
	token := standins.NewGoogleToken()
	defer token.Close()
	drive := standins.NewDrive(token)
	defer drive.Close()
	gmail := standins.NewGmail(token)
	defer gmail.Close()
	root := drive.AddFolder("Zoom archive", true)

	key := filepath.Join(dir, "service-account.json")
	if err := os.WriteFile(key, token.KeyJSON(), 0o600); err != nil {
		return err
	}
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
	rec := zoom.AddRecording(events.Recording{
		UUID: "dev/Recording+Uuid==", ID: 81234567890, HostEmail: "host@example.org", Topic: "Rehearsal: The Cherry Orchard, act 2",
		Type: 8, StartTime: start, Timezone: "Europe/Helsinki", Duration: 95,
	},
		standins.FileSpec{ID: "dev-mp4", FileType: "MP4", Extension: "MP4", RecordingType: "shared_screen_with_speaker_view", Size: 48 << 20},
		standins.FileSpec{ID: "dev-m4a", FileType: "M4A", Extension: "M4A", RecordingType: "audio_only", Size: 6 << 20},
		standins.FileSpec{ID: "dev-vtt", FileType: "TRANSCRIPT", Extension: "VTT", RecordingType: "audio_transcript", Size: 40 << 10},
		standins.FileSpec{ID: "dev-chat", FileType: "CHAT", Extension: "TXT", RecordingType: "chat_file", Size: 2 << 10},
	)
	d, err := standins.NewDelivery(events.EventRecordingCompleted, map[string]any{"account_id": zoom.AccountID, "object": rec}, "")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "recording.completed.json"), d.Body, 0o600); err != nil {
		return err
	}
	env := map[string]string{
		"ZOOM_ACCOUNT_ID": zoom.AccountID, "ZOOM_CLIENT_ID": zoom.ClientID, "ZOOM_CLIENT_SECRET": zoom.ClientSecret,
		"ZOOM_API_URL": zoom.APIURL(), "ZOOM_OAUTH_URL": zoom.OAuthURL(), "ZOOM_DOWNLOAD_HOSTS": "127.0.0.1",
		"GOOGLE_APPLICATION_CREDENTIALS": key, "DRIVE_FOLDER_ID": root, "GOOGLE_API_URL": drive.URL(),
		"GMAIL_SENDER": "archive@example.org", "NOTIFY_TO": "admins@example.org", "GMAIL_API_URL": gmail.URL(),
	}
	var lines []byte
	for k, v := range env {
		lines = append(lines, fmt.Sprintf("%s=%s\n", k, v)...)
	}
	envFile := filepath.Join(dir, "standins.env")
	if err := os.WriteFile(envFile+".tmp", lines, 0o600); err != nil {
		return err
	}
	if err := os.Rename(envFile+".tmp", envFile); err != nil { // appears whole: scripts/run waits for it
		return err
	}
	log := json.NewEncoder(os.Stdout)
	log.Encode(map[string]any{"msg": "stand-ins ready", "zoom": zoom.APIURL(), "drive": drive.URL(), "env": envFile})
	defer os.Remove(envFile)

	// Say what Drive receives, as it happens.
	seen := map[string]bool{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, f := range drive.Files() {
			if !seen[f.ID] {
				seen[f.ID] = true
				log.Encode(map[string]any{"msg": "drive received", "path": drive.Path(f.ID), "bytes": f.Size, "md5": f.MD5})
			}
		}
		for i, m := range gmail.Sent() {
			if key := fmt.Sprint("mail", i); !seen[key] {
				seen[key] = true
				log.Encode(map[string]any{"msg": "gmail sent", "to": m.Header.Get("To"), "subject": m.Subject})
				fmt.Println(m.Text)
			}
		}
		for _, c := range zoom.Calls() {
			if c.Method == "DELETE" && !seen[c.Path] {
				seen[c.Path] = true
				log.Encode(map[string]any{"msg": "zoom recording removed", "path": c.Path, "query": c.Query, "status": c.Status})
			}
		}
	}
}
