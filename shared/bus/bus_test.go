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

// The job bucket is nats.go's key-value layout with direct gets and rollups off,
// purges denied and its size bounded, also when an earlier version made it as
// nats.go does, and it keeps its keys through the change.
func TestJobBucketIsReadFromTheLeader(t *testing.T) {
	js := stagetest.JetStream(t, stagetest.NewBroker(t))
	ctx := context.Background()
	if err := js.DeleteStream(ctx, "KV_"+events.BucketJobs); err != nil { // the broker's
		t.Fatal(err)
	}
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
	if got.AllowDirect || got.AllowRollup || !got.DenyPurge {
		t.Errorf("the job bucket allows direct gets %v, rollups %v, purges %v", got.AllowDirect, got.AllowRollup, !got.DenyPurge)
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
	want.AllowRollup, want.DenyPurge = false, true
	topo := stagetest.DefaultTopology
	topo.ChunkWindow = 1 << 20
	want.MaxBytes, want.MaxMsgSize = topo.Shares().Jobs, events.MaxRecord
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

// A broker that an earlier version set up (rollups on the bucket, no purge
// denied, no byte limits) is brought to this version's topology when it starts,
// every message kept: a stream can take rollups away and deny purges.
func TestEnsureHardensAnEarlierTopology(t *testing.T) {
	js := stagetest.JetStream(t, stagetest.NewBroker(t))
	ctx := context.Background()
	// The earlier version's Ensure, as it was.
	earlier := []jetstream.StreamConfig{
		{Name: events.StreamZoomEvents, Subjects: []string{events.SubjectZoomEvents}, MaxAge: 720 * time.Hour, Duplicates: 2 * time.Hour, Discard: jetstream.DiscardOld},
		{Name: events.StreamFetchJobs, Subjects: []string{events.SubjectFetchJobs}, Retention: jetstream.WorkQueuePolicy, Duplicates: 2 * time.Minute},
		{Name: events.StreamChunks, Subjects: []string{events.SubjectChunks}, Retention: jetstream.WorkQueuePolicy, MaxBytes: 64 << 20, Discard: jetstream.DiscardNew, Duplicates: 2 * time.Minute},
		{Name: events.StreamArchive, Subjects: events.ArchiveSubjects, MaxAge: 90 * 24 * time.Hour, Duplicates: 10 * time.Minute, Discard: jetstream.DiscardOld},
		{Name: "KV_" + events.BucketJobs, Subjects: []string{"$KV." + events.BucketJobs + ".>"}, MaxMsgsPerSubject: 1, MaxBytes: -1, MaxMsgSize: -1,
			AllowRollup: true, DenyDelete: true, Duplicates: 2 * time.Minute, Discard: jetstream.DiscardNew},
	}
	for _, sc := range earlier {
		if err := js.DeleteStream(ctx, sc.Name); err != nil {
			t.Fatal(err)
		}
		sc.Storage, sc.AllowDirect = jetstream.FileStorage, sc.Name != "KV_"+events.BucketJobs
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatalf("%s: %v", sc.Name, err)
		}
	}
	for _, subj := range []string{"zoom.event.recording.completed", events.FetchJobSubject("f1"), events.ChunkSubject("f1"),
		events.FileVerifiedSubject("f1"), events.JobSubject(events.FileJobKey("f1"))} {
		if _, err := js.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}

	stagetest.Topology(t, js, "64MiB")
	share := stagetest.DefaultTopology.Shares()
	for name, want := range map[string]struct {
		maxBytes  int64
		discard   jetstream.DiscardPolicy
		denyPurge bool
	}{
		events.StreamZoomEvents:   {share.Events, jetstream.DiscardNew, true},
		events.StreamFetchJobs:    {share.FetchJobs, jetstream.DiscardNew, true},
		events.StreamChunks:       {share.Chunks, jetstream.DiscardNew, false},
		events.StreamArchive:      {share.Archive, jetstream.DiscardOld, true},
		"KV_" + events.BucketJobs: {share.Jobs, jetstream.DiscardNew, true},
	} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := s.Info(ctx)
		c := info.Config
		if c.AllowRollup || c.DenyPurge != want.denyPurge || c.MaxBytes != want.maxBytes || c.Discard != want.discard || c.MaxMsgSize <= 0 || info.State.Msgs != 1 {
			t.Errorf("%s: rollups %v, purges denied %v, max bytes %d, discard %v, max message %d, messages %d; want no rollups, purges denied %v, %d, %v, a limit, 1",
				name, c.AllowRollup, c.DenyPurge, c.MaxBytes, c.Discard, c.MaxMsgSize, info.State.Msgs, want.denyPurge, want.maxBytes, want.discard)
		}
	}
}

// The shares of BROKER_STORAGE fit in it, with room left for an operator's own
// stream, whatever the window.
func TestSharesFitTheStorage(t *testing.T) {
	for _, topo := range []bus.Topology{stagetest.DefaultTopology, {ChunkWindow: 8 << 20, Storage: 16 << 20}, {ChunkWindow: 1 << 30, Storage: 3<<30 + 7}} {
		s := topo.Shares()
		if sum := s.Events + s.Jobs + s.Archive + s.FetchJobs + s.Chunks; sum >= topo.Storage || s.Events <= 0 || s.FetchJobs <= 0 {
			t.Errorf("%d bytes with a %d-byte window: shares %+v add up to %d", topo.Storage, topo.ChunkWindow, s, sum)
		}
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
