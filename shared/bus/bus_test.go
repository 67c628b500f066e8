package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	broker "zoomarchive/nats"
	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/stagetest"
)

// The job bucket is nats.go's key-value layout with direct gets off, also when an
// earlier version made it with them on, and it keeps its keys through the change.
func TestJobBucketIsReadFromTheLeader(t *testing.T) {
	js := stagetest.JetStream(t, stagetest.NewBroker(t))
	ctx := context.Background()
	old, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.BucketJobs,
		Description: "Per-file and per-recording job state", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Put(ctx, "file.kept", []byte(`{"key":"kept"}`)); err != nil {
		t.Fatal(err)
	}
	kv := stagetest.Topology(t, js, "1MiB")
	s, err := js.Stream(ctx, "KV_"+events.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	got := s.CachedInfo().Config
	if got.AllowDirect {
		t.Error("the job bucket still allows direct gets")
	}

	// What nats.go makes for a bucket with the same settings, direct gets aside.
	probe, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "PROBE",
		Description: got.Description, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := js.Stream(ctx, "KV_PROBE")
	want := ps.CachedInfo().Config
	if probe.Bucket() != "PROBE" || !want.AllowDirect {
		t.Fatalf("probe bucket %+v", want)
	}
	want.Name, want.Subjects, want.AllowDirect = got.Name, got.Subjects, false
	if gotJSON, wantJSON := mustJSON(t, got), mustJSON(t, want); gotJSON != wantJSON {
		t.Errorf("the job bucket's stream differs from nats.go's bucket layout:\n got %s\nwant %s", gotJSON, wantJSON)
	}

	type rec struct {
		Key string `json:"key"`
		N   int    `json:"n"`
	}
	if r, found, err := bus.Get[rec](ctx, kv, "file.kept"); err != nil || !found || r.Key != "kept" {
		t.Errorf("kept key: %+v %v %v", r, found, err)
	}
	for range 3 {
		if _, err := bus.Update(ctx, kv, "file.kept", func(r *rec, _ bool) error { r.N++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	hist, err := kv.History(ctx, "file.kept")
	if r, _, _ := bus.Get[rec](ctx, kv, "file.kept"); err != nil || len(hist) != 1 || r.N != 3 {
		t.Errorf("after three updates: value %+v, %d revisions kept (%v); want n=3 and one", r, len(hist), err)
	}
	if err := kv.Delete(ctx, "file.kept"); err != nil {
		t.Fatal(err)
	}
	if _, found, err := bus.Get[rec](ctx, kv, "file.kept"); found || err != nil {
		t.Errorf("deleted key still found (%v)", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A stage whose credentials the broker refuses stops with the setting and the
// broker's word, rather than wait for a broker that will never let it in.
func TestRefusedCredentialsStopTheStage(t *testing.T) {
	url := stagetest.NewBroker(t)
	other := stagetest.Auth(t, t.TempDir())
	c := bus.Config{URL: url, Creds: broker.CredsFile(other, events.IdentityFetch), Identity: events.IdentityFetch}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := bus.Open(ctx, c, obs.Logger(io.Discard, "fetch"), obs.Registry(), "127.0.0.1:0")
	if conn != nil {
		conn.Close()
	}
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "NATS_CREDS "+c.Creds+": the broker refused them") {
		t.Fatalf("Open: %v (context %v)", err, ctx.Err())
	}
	// The same call with this broker's file goes through.
	c.Creds = stagetest.Creds(t, url, events.IdentityFetch)
	if conn, err = bus.Open(ctx, c, obs.Logger(io.Discard, "fetch"), obs.Registry(), "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// A stage stopped while it waits for the broker hears why, never a nil connection
// without an error.
func TestOpenStoppedWhileWaitingSaysSo(t *testing.T) {
	url := stagetest.NewBroker(t)
	c := bus.Config{URL: url, Creds: stagetest.Creds(t, url, events.IdentityFetch), Identity: events.IdentityFetch}
	js := stagetest.JetStream(t, url)
	if err := js.DeleteStream(context.Background(), "KV_"+events.BucketJobs); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := bus.Open(ctx, c, obs.Logger(io.Discard, "fetch"), obs.Registry(), "127.0.0.1:0")
	if conn != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open: %v, %v; want no connection and the context's error", conn, err)
	}
}
