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

	"golang.org/x/oauth2/google"

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
	conf, err := google.JWTConfigFromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	block, _ := pem.Decode(conf.PrivateKey)
	if block == nil {
		return nil, errors.New(file + ": private_key holds no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	rsaKey, ok := key.(*rsa.PrivateKey)
	if err != nil || !ok {
		return nil, fmt.Errorf("%s: not an RSA key (%v)", file, err)
	}
	g := standins.NewGoogleTokenWithKey(rsaKey, conf.PrivateKeyID)
	g.Email = conf.Email
	return g, nil
}

// serveState answers GET /state, and takes Zoom's faults (POST /faults, a JSON
// standins.Fault; DELETE /faults clears them), until ctx ends.
func (w *world) serveState(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("STANDINS_STATE_ADDR: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/state":
			rw.Header().Set("Content-Type", "application/json")
			json.NewEncoder(rw).Encode(standins.Snapshot(w.zoom, w.drive, w.gmail, w.rec, w.body))
		case r.URL.Path == "/faults" && r.Method == http.MethodPost:
			var f standins.Fault
			if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
				http.Error(rw, err.Error(), http.StatusBadRequest)
				return
			}
			w.zoom.Inject(f)
		case r.URL.Path == "/faults" && r.Method == http.MethodDelete:
			w.zoom.ClearFaults()
		default:
			http.NotFound(rw, r)
		}
	})}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go srv.Serve(ln)
	return nil
}
