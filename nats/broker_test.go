package broker_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	broker "zoomarchive/nats"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/stagetest"
)

// nats.conf, which compose runs, must be the same server as the embedded one;
// the limits are the broker's to set, once, and the file leaves them out.
func TestConfFileMatchesEmbedded(t *testing.T) {
	raw, err := server.ProcessConfigFile("nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	if raw.MaxPayload != 0 || raw.MaxControlLine != 0 || raw.JetStreamMaxStore != 0 {
		t.Errorf("nats.conf sets limits bin/broker overrides: max_payload %d, max_control_line %d, max_file_store %d",
			raw.MaxPayload, raw.MaxControlLine, raw.JetStreamMaxStore)
	}
	file, err := broker.FileOptions("nats.conf", stagetest.DefaultTopology)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := broker.Options(broker.Config{Listen: "0.0.0.0:4222", Monitor: "127.0.0.1:8222", StoreDir: "/data/nats", Topology: stagetest.DefaultTopology})
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		Name       string
		Host       string
		Port       int
		HTTPHost   string
		HTTPPort   int
		MaxPayload int32
		MaxControl int32
		JetStream  bool
		StoreDir   string
		MaxStore   int64
	}
	got := view{file.ServerName, file.Host, file.Port, file.HTTPHost, file.HTTPPort, file.MaxPayload, file.MaxControlLine, file.JetStream, file.StoreDir, file.JetStreamMaxStore}
	want := view{emb.ServerName, emb.Host, emb.Port, emb.HTTPHost, emb.HTTPPort, emb.MaxPayload, emb.MaxControlLine, emb.JetStream, emb.StoreDir, emb.JetStreamMaxStore}
	if got != want {
		t.Errorf("nats.conf %+v\nembedded  %+v", got, want)
	}
}

// bin/broker keeps JetStream data across a clean stop and start.
func TestRunStopsCleanlyAndKeepsData(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"BROKER_LISTEN": stagetest.FreeAddr(t), "BROKER_MONITOR": stagetest.FreeAddr(t), "BROKER_STORE_DIR": dir,
		"BROKER_METRICS":  stagetest.FreeAddr(t),
		"BROKER_AUTH_DIR": stagetest.Auth(t, dir)}
	url := "nats://" + env["BROKER_LISTEN"]
	stagetest.UseAuth(url, env["BROKER_AUTH_DIR"])
	start := func() *stagetest.Stage {
		s := stagetest.Start(t, "broker", broker.Run, env)
		s.WaitLog(t, "broker ready")
		return s
	}
	first := start()
	nc, err := nats.Connect(url, nats.UserCredentials(stagetest.Creds(t, url, events.IdentityOperator)))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t", bytes.Repeat([]byte("z"), 2<<20)); err != nil {
		t.Fatalf("a 2 MiB message must fit max_payload: %v", err)
	}
	resp, err := http.Get("http://" + env["BROKER_MONITOR"] + "/jsz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("monitor: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := stagetest.Metric(t, env["BROKER_METRICS"], `zoomarchive_broker_stream_messages{stream="T"}`); n != 1 {
		t.Errorf("BROKER_METRICS: stream T holds %v messages, want 1", n)
	}
	nc.Close()
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	second := start()
	nc, err = nats.Connect(url, nats.UserCredentials(stagetest.Creds(t, url, events.IdentityOperator)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream lost across restart: %v\n%s", err, second.Logs.String())
	}
	if info, _ := st.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("messages after restart: %d", info.State.Msgs)
	}
}

func TestRunRefusesBadSettings(t *testing.T) {
	auth := stagetest.Auth(t, t.TempDir())
	var out bytes.Buffer
	err := broker.Run(context.Background(), []string{"broker"}, func(k string) string {
		return map[string]string{"BROKER_LISTEN": "nowhere", "BROKER_AUTH_DIR": auth}[k]
	}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("err %v", err)
	}
	err = broker.Run(context.Background(), []string{"broker"}, func(k string) string {
		return map[string]string{"ZOOM_EVENTS_DEDUPE": "10m", "CHUNK_WINDOW": "1MiB", "BROKER_STORAGE": "1MiB"}[k]
	}, &out, &out)
	for _, want := range []string{"BROKER_AUTH_DIR: required", "ZOOM_EVENTS_DEDUPE", "CHUNK_WINDOW", "BROKER_STORAGE", "4 setting(s)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

// Compose runs bin/broker with nats.conf; its healthcheck command (the image has
// no shell) asks the monitor, and fails once the server is gone.
func TestRunFromConfFileAndHealthcheck(t *testing.T) {
	src, err := os.ReadFile("nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir, client, monitor := t.TempDir(), stagetest.FreeAddr(t), stagetest.FreeAddr(t)
	conf := strings.NewReplacer("0.0.0.0:4222", client, "127.0.0.1:8222", monitor, "/data/nats", dir).Replace(string(src))
	file := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BROKER_CONFIG": file, "BROKER_MONITOR": monitor, "BROKER_AUTH_DIR": stagetest.Auth(t, dir), "BROKER_METRICS": "off"}
	stagetest.UseAuth("nats://"+client, env["BROKER_AUTH_DIR"])
	health := func() error {
		var out bytes.Buffer
		return broker.Run(context.Background(), []string{"broker", "healthcheck"}, func(k string) string { return env[k] }, &out, &out)
	}
	s := stagetest.Start(t, "broker", broker.Run, env)
	s.WaitLog(t, "broker ready")
	nc, err := nats.Connect("nats://"+client, nats.UserCredentials(stagetest.Creds(t, "nats://"+client, events.IdentityOperator)))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := health(); err != nil {
		t.Fatalf("healthcheck of a running broker: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		t.Fatalf("JetStream data not where nats.conf's store_dir says: %v", err)
	}
	if err := health(); err == nil {
		t.Fatal("healthcheck passed with the broker stopped")
	}
	env["BROKER_CONFIG"] = filepath.Join(dir, "missing.conf")
	var out bytes.Buffer
	if err := broker.Run(context.Background(), []string{"broker"}, func(k string) string { return env[k] }, &out, &out); err == nil || !strings.Contains(err.Error(), "BROKER_CONFIG") {
		t.Fatalf("a missing configuration file: %v", err)
	}
}

// Two nodes from nats-server configuration files with their routes over TLS: the
// broker adds the folder's routes password, so nodes of one folder form a
// cluster and a node of another folder (another password) is kept out.
func TestClusterRoutesAuthenticatedOverTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key, ca := routeTLS(t, dir)
	auth, stranger := stagetest.Auth(t, filepath.Join(dir, "a")), stagetest.Auth(t, filepath.Join(dir, "b"))
	routes := []string{stagetest.FreeAddr(t), stagetest.FreeAddr(t), stagetest.FreeAddr(t)}
	node := func(i int, auth string) *server.Server {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, `"nats-route://`+r+`"`)
			}
		}
		conf := fmt.Sprintf(`server_name: node%d
listen: %q
jetstream { store_dir: %q }
cluster {
  name: zoomarchive
  listen: %q
  routes: [%s]
  tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }
}
`, i, stagetest.FreeAddr(t), filepath.Join(dir, fmt.Sprint("store", i)), routes[i], strings.Join(others, ", "), cert, key, ca)
		file := filepath.Join(dir, fmt.Sprintf("node%d.conf", i))
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := broker.StartFile(file, broker.Config{AuthDir: auth, Topology: stagetest.DefaultTopology}, obs.Logger(io.Discard, "broker"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		return s
	}
	a, b, c := node(0, auth), node(1, auth), node(2, stranger)
	stagetest.WaitFor(t, "the two nodes of one folder routed to each other", 20*time.Second, func() bool {
		return a.NumRoutes() > 0 && b.NumRoutes() > 0
	})
	time.Sleep(2 * time.Second) // the stranger keeps trying meanwhile
	if c.NumRoutes() != 0 || a.NumRemotes() != 1 {
		t.Fatalf("routes: the stranger has %d, a node sees %d others (want 0 and 1)", c.NumRoutes(), a.NumRemotes())
	}
}

// routeTLS writes a CA and one certificate for every node on loopback.
func routeTLS(t *testing.T, dir string) (cert, key, ca string) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "routes CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(k)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("node.pem", "CERTIFICATE", der), write("node-key.pem", "PRIVATE KEY", keyDER), write("ca.pem", "CERTIFICATE", caDER)
}

// BROKER_STORAGE bounds all JetStream data on the disk, an operator's own stream
// without limits included: past it the broker refuses to store.
func TestStorageBoundsTheWholeBroker(t *testing.T) {
	dir, addr := t.TempDir(), stagetest.FreeAddr(t)
	topo := stagetest.DefaultTopology
	topo.ChunkWindow, topo.Storage = 8<<20, 16<<20
	auth := stagetest.Auth(t, dir)
	s, err := broker.Start(broker.Config{Listen: addr, StoreDir: dir, AuthDir: auth, Topology: topo}, obs.Logger(io.Discard, "broker"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	url := "nats://" + addr
	stagetest.UseAuth(url, auth)
	js := stagetest.JetStream(t, url)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BIG", Subjects: []string{"big"}, MaxBytes: topo.Storage / 2}); err == nil {
		t.Error("a stream reserving half of BROKER_STORAGE, beside the pipeline's, was created")
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "U", Subjects: []string{"u"}}); err != nil {
		t.Fatal(err)
	}
	mib := bytes.Repeat([]byte{'u'}, 1<<20)
	for i := 0; ; i++ {
		if _, err := js.Publish(ctx, "u", mib); err != nil {
			break
		}
		if int64(i+1)<<20 > topo.Storage {
			t.Fatalf("stored %d MiB in a broker of %d MiB", i+1, topo.Storage>>20)
		}
	}
}
