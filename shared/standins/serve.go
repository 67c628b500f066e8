package standins

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
)

// Public, set before the stand-ins start, makes each one listen on every address
// at the next port from Port, with TLS, and call itself https://Host:port. The
// compose stack test runs them so, in their own container: the stages reach them
// by service name and trust the certificate's CA. Unset, each listens on loopback
// at a free port, in plain HTTP.
var Public *PublicConfig

// PublicConfig is where and how the stand-ins listen when Public is set.
type PublicConfig struct {
	Host string
	Port int
	Cert tls.Certificate

	mu   sync.Mutex
	next int
}

func newServer(h http.Handler) *httptest.Server {
	if Public == nil {
		return httptest.NewServer(h)
	}
	p := Public
	p.mu.Lock()
	port := p.Port + p.next
	p.next++
	p.mu.Unlock()
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		panic(fmt.Sprintf("standins: listen on %d: %v", port, err))
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.TLS = &tls.Config{Certificates: []tls.Certificate{p.Cert}}
	s.StartTLS()
	s.URL = fmt.Sprintf("https://%s:%d", p.Host, port)
	return s
}
