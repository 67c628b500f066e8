package main

import (
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"zoomarchive/shared/standins"
)

// In the compose stack test (deploy/stack) the stand-ins run in their own
// container. STANDINS_PUBLIC=host:port makes them listen with TLS on that port
// and the next ones, in this order: Zoom's API, Zoom's CDN, Google's token
// endpoint, Drive, Gmail; STANDINS_TLS_CERT and STANDINS_TLS_KEY are the
// certificate for host. STANDINS_GOOGLE_KEY is the service-account key file the
// stages get, so the token endpoint checks their assertions against it.
func setPublic(getenv func(string) string) error {
	host, port, err := net.SplitHostPort(getenv("STANDINS_PUBLIC"))
	if err != nil {
		return fmt.Errorf("STANDINS_PUBLIC: %w", err)
	}
	first, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("STANDINS_PUBLIC: port %q", port)
	}
	cert, err := tls.LoadX509KeyPair(getenv("STANDINS_TLS_CERT"), getenv("STANDINS_TLS_KEY"))
	if err != nil {
		return fmt.Errorf("STANDINS_TLS_CERT, STANDINS_TLS_KEY: %w", err)
	}
	standins.Public = &standins.PublicConfig{Host: host, Port: first, Cert: cert}
	return nil
}

// googleToken is the token endpoint, for the key in STANDINS_GOOGLE_KEY when set.
func googleToken(file string) (*standins.GoogleToken, error) {
	if file == "" {
		return standins.NewGoogleToken(), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var kf struct {
		PrivateKey  string `json:"private_key"`
		ClientEmail string `json:"client_email"`
	}
	if err := json.Unmarshal(b, &kf); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	block, _ := pem.Decode([]byte(kf.PrivateKey))
	if block == nil {
		return nil, fmt.Errorf("%s: private_key holds no PEM block", file)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New(file + ": not an RSA key")
	}
	g := standins.NewGoogleTokenWithKey(rsaKey)
	g.Email = kf.ClientEmail
	return g, nil
}

// State is what the stand-ins hold, served as JSON on STANDINS_STATE_ADDR for the
// stack test, which cannot look inside the container otherwise.
type State struct {
	Zoom   []StateFile `json:"zoom"`  // the recording's files as Zoom has them
	Drive  []StateFile `json:"drive"` // what Drive holds, not trashed
	Mails  []StateMail `json:"mails"`
	Trash  []string    `json:"trash"`  // Zoom's recording delete calls answered 2xx
	Served int64       `json:"served"` // file bytes Zoom's CDN sent
	// Completed is the recording.completed body for the recording.
	Completed json.RawMessage `json:"completed"`
}

// StateFile is one file: a Drive path or a Zoom file id, its size and MD5.
type StateFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	MD5  string `json:"md5"`
}

// StateMail is one mail Gmail sent.
type StateMail struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

func (w *world) state() State {
	s := State{Completed: w.body, Served: w.zoom.BytesServed()}
	for _, f := range append(w.rec.RecordingFiles, w.rec.ParticipantAudioFiles...) {
		md5hex, _ := w.zoom.Content(f.ID).Digests()
		s.Zoom = append(s.Zoom, StateFile{Name: f.ID, Size: int64(f.FileSize), MD5: md5hex})
	}
	for _, f := range w.drive.Files() {
		s.Drive = append(s.Drive, StateFile{Name: w.drive.Path(f.ID), Size: f.Size, MD5: f.MD5})
	}
	for _, m := range w.gmail.Sent() {
		s.Mails = append(s.Mails, StateMail{To: m.Header.Get("To"), Subject: m.Subject})
	}
	for _, c := range w.zoom.Calls() {
		if c.Method == http.MethodDelete && c.Status < 300 {
			s.Trash = append(s.Trash, c.Path+"?"+c.Query)
		}
	}
	return s
}

// serveState answers GET /state until ctx ends.
func (w *world) serveState(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("STANDINS_STATE_ADDR: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/state" {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		json.NewEncoder(rw).Encode(w.state())
	})}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go srv.Serve(ln)
	return nil
}
