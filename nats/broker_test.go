package broker_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	broker "zoomarchive/nats"
	"zoomarchive/shared/stagetest"
)

// nats.conf, which compose runs, must be the same server as the embedded one.
func TestConfFileMatchesEmbedded(t *testing.T) {
	file, err := server.ProcessConfigFile("nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	emb, err := broker.Options(broker.Config{Listen: "0.0.0.0:4222", Monitor: "0.0.0.0:8222", StoreDir: "/data/nats"})
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
		JetStream  bool
		StoreDir   string
	}
	got := view{file.ServerName, file.Host, file.Port, file.HTTPHost, file.HTTPPort, file.MaxPayload, file.JetStream, file.StoreDir}
	want := view{emb.ServerName, emb.Host, emb.Port, emb.HTTPHost, emb.HTTPPort, emb.MaxPayload, emb.JetStream, emb.StoreDir}
	if got != want {
		t.Errorf("nats.conf %+v\nembedded  %+v", got, want)
	}
}

// bin/broker keeps JetStream data across a clean stop and start.
func TestRunStopsCleanlyAndKeepsData(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"BROKER_LISTEN": stagetest.FreeAddr(t), "BROKER_MONITOR": stagetest.FreeAddr(t), "BROKER_STORE_DIR": dir}
	start := func() *stagetest.Stage {
		s := stagetest.Start(t, "broker", broker.Run, env)
		s.WaitLog(t, "broker ready")
		return s
	}
	first := start()
	nc, err := nats.Connect("nats://" + env["BROKER_LISTEN"])
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
	nc.Close()
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}

	second := start()
	nc, err = nats.Connect("nats://" + env["BROKER_LISTEN"])
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
	var out bytes.Buffer
	err := broker.Run(context.Background(), []string{"broker"}, func(k string) string {
		return map[string]string{"BROKER_LISTEN": "nowhere"}[k]
	}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("err %v", err)
	}
}
