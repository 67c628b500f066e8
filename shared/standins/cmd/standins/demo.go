package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"zoomarchive/shared/standins"
)

// demo plays Zoom: once the hook is ready it delivers the recording's
// recording.completed, signed, shows the bytes as they reach Drive, then prints what
// Drive holds, the mail the admins got and the call that trashed the recording in
// Zoom, and exits (make demo then stops everything).
func (w *world) demo(ctx context.Context) error {
	hook := os.Getenv("STANDINS_HOOK_URL")
	secret := os.Getenv("ZOOM_WEBHOOK_SECRET")
	var total int64
	for _, f := range append(w.rec.RecordingFiles, w.rec.ParticipantAudioFiles...) {
		total += int64(f.FileSize)
	}
	fmt.Printf("Zoom stand-in: %q, %d files, %.0f MB. Waiting for the hook at %s\n",
		w.rec.Topic, len(w.rec.RecordingFiles)+len(w.rec.ParticipantAudioFiles), float64(total)/1e6, hook)
	zoom := &standins.ZoomWebhooks{URL: hook, Secret: secret}
	d := standins.Delivery{Body: w.body, RequestID: standins.NewZoomRequestID()}
	start := time.Now()
	for {
		status, _, err := zoom.Send(ctx, d)
		if err == nil && status == http.StatusOK {
			break
		}
		if ctx.Err() != nil || time.Since(start) > time.Minute {
			return fmt.Errorf("the hook did not take the event: status %d, %v", status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("Delivered recording.completed (x-zm-request-id %s); the hook answered 200.\n", d.RequestID)
	sent := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		var stored int64
		for _, f := range w.drive.Files() {
			stored += f.Size
		}
		fmt.Printf("  %5.1fs  Zoom served %4.0f MB, Drive holds %4.0f MB of %.0f MB\n",
			time.Since(sent).Seconds(), float64(w.zoom.BytesServed())/1e6, float64(stored)/1e6, float64(total)/1e6)
		if len(w.gmail.Sent()) > 0 && w.zoom.CallsTo("DELETE", "/v2/meetings/") > 0 {
			break
		}
		if time.Since(sent) > 3*time.Minute {
			return fmt.Errorf("not archived within 3 minutes")
		}
	}
	fmt.Printf("\nArchived in %.1fs. Drive now holds:\n", time.Since(sent).Seconds())
	var paths []string
	sizes := map[string]standins.DriveFile{}
	for _, f := range w.drive.Files() {
		p := w.drive.Path(f.ID)
		paths, sizes[p] = append(paths, p), f
	}
	sort.Strings(paths)
	for _, p := range paths {
		depth := strings.Count(p, "/")
		name := p[strings.LastIndex(p, "/")+1:]
		if f := sizes[p]; f.MimeType == "application/vnd.google-apps.folder" {
			fmt.Printf("%s%s/\n", strings.Repeat("  ", depth), name)
		} else if f.MimeType == "application/vnd.google-apps.document" {
			fmt.Printf("%s%s  (Google Doc)\n", strings.Repeat("  ", depth), name)
		} else {
			fmt.Printf("%s%s  (%d bytes, md5 %s)\n", strings.Repeat("  ", depth), name, f.Size, f.MD5)
		}
	}
	// The words go into the video's index just after it is verified.
	const line = "a string snapping in the sky"
	media := func(files []standins.DriveFile) (n int) {
		for _, f := range files {
			if strings.HasPrefix(f.MimeType, "video/") || strings.HasPrefix(f.MimeType, "audio/") {
				n++
			}
		}
		return n
	}
	var found []standins.DriveFile
	for wait := time.Now(); time.Since(wait) < 10*time.Second; time.Sleep(200 * time.Millisecond) {
		if found = w.drive.Search(line); media(found) == media(w.drive.Files()) {
			break
		}
	}
	fmt.Printf("\nDrive's search for %q finds:\n", line)
	for _, f := range found {
		fmt.Printf("  %s\n", f.Name)
	}
	for _, c := range w.zoom.Calls() {
		if c.Method == "DELETE" {
			fmt.Printf("\nZoom was asked: DELETE %s?%s -> %d\n", c.Path, c.Query, c.Status)
		}
	}
	for _, f := range w.drive.Files() {
		for _, p := range f.Permissions {
			mail := "Drive sent them no mail"
			if p.Notified {
				mail = "Drive mailed them"
			}
			fmt.Printf("\nThe folder %q is shared with the %s %s as %s; %s.\n", f.Name, p.Type, p.EmailAddress, p.Role, mail)
		}
	}
	m := w.gmail.Sent()[0]
	fmt.Printf("\nThe mail to %s, %q:\n\n%s\n", m.Header.Get("To"), m.Subject, m.Text)
	return nil
}
