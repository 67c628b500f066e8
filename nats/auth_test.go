package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	broker "zoomarchive/nats"
	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
)

// One operation on the broker, as a program's code would do it.
type operation struct {
	name string
	do   func(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error
}

func publish(subject string) operation {
	return operation{"publish " + subject, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		_, err := js.Publish(ctx, subject, []byte(`{}`))
		return err
	}}
}

// jobOp is an operation on the job bucket, which it opens first as a stage does.
func jobOp(name string, do func(ctx context.Context, kv jetstream.KeyValue) error) operation {
	return operation{name, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		kv, err := js.KeyValue(ctx, events.BucketJobs)
		if err != nil {
			return err
		}
		return do(ctx, kv)
	}}
}

func putJob(key string) operation {
	return jobOp("put "+key, func(ctx context.Context, kv jetstream.KeyValue) error {
		_, err := kv.Put(ctx, key, []byte(`{"state":"verified"}`))
		return err
	})
}

func getJob(key string) operation {
	return jobOp("get "+key, func(ctx context.Context, kv jetstream.KeyValue) error {
		if _, err := kv.Get(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return err
		}
		return nil
	})
}

func streamInfo(stream string) operation {
	return operation{"read stream " + stream, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		_, err := js.Stream(ctx, stream)
		return err
	}}
}

func consumer(stream, name, filter string) operation {
	return operation{"consumer " + name + " on " + stream, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		_, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: name, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy})
		return err
	}}
}

// request is a JetStream API call by hand; any answer means the broker let it
// through.
func request(name, subject, body string) operation {
	return operation{name, func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		_, err := nc.RequestWithContext(ctx, subject, []byte(body))
		return err
	}}
}

// coreOp is a plain publish: a refusal comes back as an asynchronous error.
func coreOp(name, subject string) operation {
	return operation{name, func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		if err := nc.Publish(subject, nil); err != nil {
			return err
		}
		return nc.Flush()
	}}
}

func pull(stream, consumer string) operation {
	return request("pull from "+consumer+" on "+stream, "$JS.API.CONSUMER.MSG.NEXT."+stream+"."+consumer, `{"batch":1,"no_wait":true}`)
}

func ack(stream, consumer string) operation {
	return coreOp("ack a message of "+consumer, "$JS.ACK."+stream+"."+consumer+".1.1.1.1700000000000000000.0")
}

func readMsg(stream string) operation {
	return request("read a message of "+stream, "$JS.API.STREAM.MSG.GET."+stream, `{"seq":1}`)
}

func directGet(stream string) operation {
	return request("direct get from "+stream, "$JS.API.DIRECT.GET."+stream, `{"seq":1}`)
}

// purgeOf purges stream, only filter's messages when filter is not empty; the
// permission is asked, the stream may still refuse (DenyPurge).
func purgeOf(stream, filter string) operation {
	name := "purge " + stream
	if filter != "" {
		name += " " + filter
	}
	return request(name, "$JS.API.STREAM.PURGE."+stream, `{"filter":"`+filter+`"}`)
}

var (
	deleteStream = operation{"delete stream " + events.StreamChunks, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		return js.DeleteStream(ctx, events.StreamChunks)
	}}
	editStream = operation{"edit stream " + events.StreamZoomEvents, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		_, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: events.StreamZoomEvents, Subjects: []string{events.SubjectZoomEvents}, MaxAge: time.Minute,
			DenyPurge: true}) // a stream cannot take purges again once it denied them
		return err
	}}
	// What nats.go's key watcher sends to recreate its ordered consumer after a
	// gap: the create request that names no consumer.
	recreateJobWatcher = operation{"recreate a job-bucket watcher", func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		req := `{"stream_name":"KV_` + events.BucketJobs + `","config":{"ack_policy":"none","deliver_policy":"last_per_subject",` +
			`"filter_subject":"$KV.` + events.BucketJobs + `.file.>","inactive_threshold":1000000000,"mem_storage":true,"num_replicas":1}}`
		msg, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.CREATE.KV_"+events.BucketJobs, []byte(req))
		if err != nil {
			return err
		}
		var answer struct{ Error *struct{ Description string } }
		if err := json.Unmarshal(msg.Data, &answer); err != nil || answer.Error != nil {
			return fmt.Errorf("consumer not created: %v %s", err, msg.Data)
		}
		return nil
	}}
	readOthersInbox = operation{"subscribe to fetch's replies", func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		sub, err := nc.SubscribeSync(events.Inbox(events.IdentityFetch) + ".>")
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		return nc.Flush()
	}}
)

// Every identity may do what its program needs and is refused, with a permissions
// violation, what it must not do; each refusal is also seen allowed to the
// identity whose job it is, so a refusal is the permission and not a broken call.
func TestEachIdentityMayDoOnlyItsJob(t *testing.T) {
	url := stagetest.NewBroker(t)
	file, rec := events.FileJobKey("f1"), events.RecordingJobKey("r1")
	type permCase struct {
		id      string
		op      operation
		allowed bool
	}
	cases := []permCase{
		{events.IdentityHook, publish("zoom.event.recording.completed"), true},
		{events.IdentityHook, streamInfo(events.StreamZoomEvents), false},
		{events.IdentityFetch, streamInfo(events.StreamZoomEvents), true},
		{events.IdentityHook, getJob(file), false},
		{events.IdentityHook, putJob(file), false},
		{events.IdentityHook, publish(events.JobSubject(file)), false},
		{events.IdentityHook, publish(events.JobSubject(events.HeartbeatKey("hook"))), true},
		{events.IdentityHook, publish(events.JobSubject(events.HeartbeatKey("fetch"))), false},
		{events.IdentityHook, publish(events.FileVerifiedSubject("f1")), false},
		{events.IdentityUpload, publish(events.FileVerifiedSubject("f1")), true},
		{events.IdentityUpload, publish("zoom.event.x"), false},
		{events.IdentityFetch, publish("zoom.event.x"), true},
		{events.IdentityUpload, putJob(file), true},
		{events.IdentityUpload, putJob(rec), false},
		{events.IdentityFetch, putJob(rec), true},
		{events.IdentityNotify, putJob(file), false},
		{events.IdentityNotify, getJob(file), true},
		{events.IdentityNotify, putJob(events.NotifyKey("sent.x")), true},
		{events.IdentityFetch, putJob(events.NotifyKey("sent.x")), false},
		{events.IdentityNotify, publish(events.RecordingArchivedSubject("r1")), false},
		{events.IdentityFetch, publish(events.RecordingArchivedSubject("r1")), true},
		{events.IdentityNotify, consumer(events.StreamArchive, events.ConsumerFetchArchive, events.FileVerifiedSubject(">")), false},
		{events.IdentityFetch, consumer(events.StreamArchive, events.ConsumerFetchArchive, events.FileVerifiedSubject(">")), true},
		{events.IdentityUpload, consumer(events.StreamFetchJobs, events.ConsumerFetchJobs, ""), false},
		{events.IdentityFetch, consumer(events.StreamFetchJobs, events.ConsumerFetchJobs, ""), true},
		{events.IdentityUpload, putJob(events.AlertKey(events.AlertDriveFull)), true},
		{events.IdentityFetch, putJob(events.AlertKey(events.AlertDriveFull)), false},
		{events.IdentityFetch, publish(events.AlertSubject(events.AlertZoomRefused)), true},
		{events.IdentityNotify, publish(events.AlertSubject(events.AlertZoomRefused)), false},
		{events.IdentityFetch, recreateJobWatcher, true},
		{events.IdentityHook, recreateJobWatcher, false},
		{events.IdentityUpload, readOthersInbox, false},
		{events.IdentityOperator, readOthersInbox, true},

		// notify gets what its mails need: no pull or ack on fetch's consumer, no
		// chunk's bytes, but how full the streams are.
		{events.IdentityNotify, pull(events.StreamArchive, events.ConsumerFetchArchive), false},
		{events.IdentityFetch, pull(events.StreamArchive, events.ConsumerFetchArchive), true},
		{events.IdentityNotify, ack(events.StreamArchive, events.ConsumerFetchArchive), false},
		{events.IdentityFetch, ack(events.StreamArchive, events.ConsumerFetchArchive), true},
		{events.IdentityNotify, consumer(events.StreamArchive, events.ConsumerNotify, ""), true},
		{events.IdentityNotify, pull(events.StreamArchive, events.ConsumerNotify), true},
		{events.IdentityNotify, readMsg(events.StreamChunks), false},
		{events.IdentityNotify, directGet(events.StreamChunks), false},
		{events.IdentityUpload, readMsg(events.StreamChunks), true},
		{events.IdentityUpload, directGet(events.StreamChunks), true},
		{events.IdentityNotify, streamInfo(events.StreamChunks), true},
		{events.IdentityNotify, streamInfo(events.StreamZoomEvents), true},
		{events.IdentityNotify, streamInfo(events.StreamFetchJobs), true},
		{events.IdentityNotify, readMsg(events.StreamZoomEvents), false},
		{events.IdentityFetch, readMsg(events.StreamZoomEvents), true},

		// The broker-full alert is notify's alone: the hook, which can fill
		// ZOOM_EVENTS, can neither fake nor clear it.
		{events.IdentityHook, publish(events.AlertSubject(events.AlertBrokerFull)), false},
		{events.IdentityHook, putJob(events.AlertKey(events.AlertBrokerFull)), false},
		{events.IdentityNotify, publish(events.AlertSubject(events.AlertBrokerFull)), true},
		{events.IdentityNotify, putJob(events.AlertKey(events.AlertBrokerFull)), true},

		// Purges: only fetch and upload, only CHUNKS (each drops one file's chunks).
		{events.IdentityFetch, purgeOf(events.StreamChunks, events.ChunkSubject("f1")), true},
		{events.IdentityUpload, purgeOf(events.StreamChunks, events.ChunkSubject("f1")), true},
		{events.IdentityHook, purgeOf(events.StreamChunks, events.ChunkSubject("f1")), false},
		{events.IdentityNotify, purgeOf(events.StreamChunks, events.ChunkSubject("f1")), false},
	}
	for _, id := range []string{events.IdentityHook, events.IdentityFetch, events.IdentityUpload, events.IdentityNotify} {
		for _, stream := range []string{events.StreamZoomEvents, events.StreamFetchJobs, events.StreamArchive, "KV_" + events.BucketJobs} {
			cases = append(cases, permCase{id, purgeOf(stream, ""), false})
		}
	}
	for _, id := range []string{events.IdentityHook, events.IdentityFetch, events.IdentityUpload, events.IdentityNotify} {
		cases = append(cases, permCase{id, deleteStream, false}, permCase{id, editStream, false})
	}
	cases = append(cases, permCase{events.IdentityOperator, editStream, true}, permCase{events.IdentityOperator, deleteStream, true})

	for _, c := range cases {
		t.Run(c.id+" "+c.op.name, func(t *testing.T) {
			violations := make(chan error, 8)
			nc, err := nats.Connect(url, nats.UserCredentials(stagetest.Creds(t, url, c.id)),
				nats.CustomInboxPrefix(events.Inbox(c.id)),
				nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			// Generous for what is allowed (a loaded machine); a refusal is reported as
			// soon as the broker sees it, and the refused call is not waited for.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.op.do(ctx, nc, js) }()
			if c.allowed {
				if err := <-done; err != nil {
					t.Fatalf("refused: %v", err)
				}
				nc.Flush() // a refusal of any part has come back by now
				select {
				case v := <-violations:
					t.Fatalf("the broker refused part of it: %v", v)
				default:
				}
				return
			}
			var v error
			select {
			case v = <-violations:
			case err := <-done: // the call did not wait for an answer (a subscription)
				select {
				case v = <-violations:
				case <-time.After(2 * time.Second):
					t.Fatalf("allowed (err %v), want a permissions violation", err)
				}
			case <-ctx.Done():
				t.Fatal("no permissions violation within 10s")
			}
			if !errors.Is(v, nats.ErrPermissionViolation) {
				t.Fatalf("error %v, want a permissions violation", v)
			}
		})
	}
}

// Without credentials, or with credentials of another set, nobody gets in; a
// stage says which setting is wrong and what the broker said, and stops.
func TestStrangersAreRefused(t *testing.T) {
	url := stagetest.NewBroker(t)
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was accepted")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("no credentials: %v, want an authorization violation", err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := broker.WriteCreds(other, false); err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect(url, nats.UserCredentials(broker.CredsFile(other, events.IdentityOperator))); err == nil {
		nc.Close()
		t.Fatal("an operator of another credentials set was accepted")
	}
	// The same connection with this broker's own file goes through.
	nc, err := nats.Connect(url, nats.UserCredentials(stagetest.Creds(t, url, events.IdentityOperator)))
	if err != nil {
		t.Fatalf("this set's operator: %v", err)
	}
	nc.Close()
}

// `broker creds DIR` writes every identity once and does not overwrite a set in
// use unless told to; the broker refuses to start without one.
func TestCredsCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	var out bytes.Buffer
	creds := func(args ...string) error {
		out.Reset()
		return broker.Run(context.Background(), append([]string{"broker", "creds"}, args...), func(string) string { return "" }, &out, &out)
	}
	if err := creds(dir); err != nil {
		t.Fatal(err)
	}
	for _, id := range append(events.ClientIdentities, events.IdentityBroker) {
		b, err := os.ReadFile(broker.CredsFile(dir, id))
		if err != nil || !bytes.Contains(b, []byte("BEGIN NATS USER JWT")) || !bytes.Contains(b, []byte("BEGIN USER NKEY SEED")) {
			t.Fatalf("%s: %v\n%s", id, err, b)
		}
	}
	first, _ := os.ReadFile(broker.CredsFile(dir, events.IdentityHook))
	if err := creds(dir); !errors.Is(err, broker.ErrCredsExist) {
		t.Fatalf("second creds into a full folder: %v", err)
	}
	if again, _ := os.ReadFile(broker.CredsFile(dir, events.IdentityHook)); !bytes.Equal(first, again) {
		t.Fatal("a refused creds run changed the files")
	}
	if err := creds("--force", dir); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(broker.CredsFile(dir, events.IdentityHook)); bytes.Equal(first, again) {
		t.Fatal("--force kept the old identity")
	}

	env := map[string]string{"BROKER_LISTEN": stagetest.FreeAddr(t), "BROKER_STORE_DIR": t.TempDir(), "BROKER_MONITOR": "off", "BROKER_METRICS": "off"}
	err := broker.Run(context.Background(), []string{"broker"}, func(k string) string { return env[k] }, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "BROKER_AUTH_DIR: required") {
		t.Fatalf("no BROKER_AUTH_DIR: %v", err)
	}
	env["BROKER_AUTH_DIR"] = t.TempDir()
	err = broker.Run(context.Background(), []string{"broker"}, func(k string) string { return env[k] }, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "BROKER_AUTH_DIR") || !strings.Contains(err.Error(), "broker creds") {
		t.Fatalf("an empty BROKER_AUTH_DIR: %v", err)
	}
}

// creds --renew gives one program a new identity in its file, in place, and
// revokes the old one in the account; the others keep theirs. A set made before
// renewals, or a name that is no program's, is refused with what to do.
func TestCredsRenewOneIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	if err := broker.WriteCreds(dir, false); err != nil {
		t.Fatal(err)
	}
	userOf := func(id string) string {
		b, _ := os.ReadFile(broker.CredsFile(dir, id))
		tok, _ := jwt.ParseDecoratedJWT(b)
		uc, err := jwt.DecodeUserClaims(tok)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return uc.Subject
	}
	hook, upload := userOf(events.IdentityHook), userOf(events.IdentityUpload)
	before, _ := os.Stat(broker.CredsFile(dir, events.IdentityUpload))
	var out bytes.Buffer
	err := broker.Run(context.Background(), []string{"broker", "creds", "--renew", "upload", dir}, func(string) string { return "" }, &out, &out)
	if err != nil || !strings.Contains(out.String(), "renewed upload") {
		t.Fatalf("renew: %v\n%s", err, &out)
	}
	after, _ := os.Stat(broker.CredsFile(dir, events.IdentityUpload))
	if userOf(events.IdentityUpload) == upload || userOf(events.IdentityHook) != hook || !os.SameFile(before, after) {
		t.Fatalf("upload %s -> %s (in place: %v), hook %s -> %s", upload, userOf(events.IdentityUpload), os.SameFile(before, after), hook, userOf(events.IdentityHook))
	}
	b, _ := os.ReadFile(filepath.Join(dir, "broker", "account.jwt"))
	ac, err := jwt.DecodeAccountClaims(string(b))
	_, revoked := ac.Revocations[upload]
	if err != nil || !revoked || len(ac.Revocations) != 1 {
		t.Fatalf("account after the renewal: %v, revocations %v", err, ac.Revocations)
	}

	if _, _, err := broker.RenewCreds(dir, "stranger"); err == nil {
		t.Error("renewed an identity no program has")
	}
	os.RemoveAll(filepath.Join(dir, "keys"))
	if _, _, err := broker.RenewCreds(dir, events.IdentityUpload); !errors.Is(err, broker.ErrNoKeys) {
		t.Errorf("a set without its keys: %v", err)
	}
}

// A rollup is a purge riding on a publish: with "Nats-Rollup: all" one message
// replaces a whole stream, with "sub" every earlier message on its subject. No
// stream and not the job bucket takes one, from any identity on any subject it
// may publish on, the operator's included (the streams refuse it themselves), so
// the hook's heartbeat key cannot erase the jobs.
func TestNoRollupErasesAnything(t *testing.T) {
	url := stagetest.NewBroker(t)
	ctx := context.Background()
	heartbeat := events.JobSubject(events.HeartbeatKey(events.IdentityHook))
	fileKey := events.JobSubject(events.FileJobKey("f1"))
	subjects := map[string][]string{
		events.IdentityHook: {"zoom.event.recording.completed", heartbeat},
		events.IdentityFetch: {"zoom.event.recording.completed", events.FetchJobSubject("f1"), events.ChunkSubject("f1"),
			events.RecordingArchivedSubject("r1"), events.JobSubject(events.RecordingJobKey("r1"))},
		events.IdentityUpload: {events.FileVerifiedSubject("f1"), events.FetchJobSubject("f1"), fileKey},
		events.IdentityNotify: {events.AlertSubject(events.AlertChunkWindowFull), events.JobSubject(events.NotifyKey("sent.x"))},
	}
	for _, id := range events.Stages {
		subjects[events.IdentityOperator] = append(subjects[events.IdentityOperator], subjects[id]...)
	}
	// Every stream holds messages on the subjects rolled up and on others.
	operator := stagetest.JetStream(t, url)
	for _, ss := range subjects {
		for _, subj := range ss {
			for _, s := range []string{subj, subj + "x"} {
				if _, err := operator.Publish(ctx, s, []byte(`{}`)); err != nil {
					t.Fatalf("seed %s: %v", s, err)
				}
			}
		}
	}
	counts := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, name := range []string{events.StreamZoomEvents, events.StreamFetchJobs, events.StreamChunks, events.StreamArchive, "KV_" + events.BucketJobs} {
			s, err := operator.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = info.State.Msgs
		}
		return out
	}
	before := counts()

	for _, id := range events.ClientIdentities {
		nc, err := nats.Connect(url, bus.Config{Creds: stagetest.Creds(t, url, id), Identity: id}.Options()...)
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		for _, subj := range subjects[id] {
			for _, rollup := range []string{"all", "sub"} {
				msg := nats.NewMsg(subj)
				msg.Data = []byte(`{}`)
				msg.Header.Set("Nats-Rollup", rollup)
				_, err := js.PublishMsg(ctx, msg)
				var apiErr *jetstream.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.ErrorCode(server.JSStreamRollupFailedF) {
					t.Errorf("%s: a rollup %q on %s: %v, want the stream's refusal", id, rollup, subj, err)
				}
			}
		}
		nc.Close()
	}
	if after := counts(); !maps.Equal(before, after) {
		t.Errorf("messages before the rollups %v, after %v", before, after)
	}
}

// Only CHUNKS takes purges (one file's chunks, by fetch and upload); every other
// stream and the job bucket refuse them to anyone, the operator too: a purge asks
// for its filter in the request's body, which no permission can read.
func TestStreamsRefusePurges(t *testing.T) {
	url := stagetest.NewBroker(t)
	js := stagetest.JetStream(t, url)
	ctx := context.Background()
	for _, name := range []string{events.StreamZoomEvents, events.StreamFetchJobs, events.StreamArchive, "KV_" + events.BucketJobs} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range [][]jetstream.StreamPurgeOpt{nil, {jetstream.WithPurgeSubject(s.CachedInfo().Config.Subjects[0])}} {
			var apiErr *jetstream.APIError
			if err := s.Purge(ctx, opts...); !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.ErrorCode(server.JSStreamPurgeFailedF) {
				t.Errorf("the operator's purge of %s (%d options): %v, want the stream's refusal", name, len(opts), err)
			}
		}
	}
	chunks, _ := js.Stream(ctx, events.StreamChunks)
	if err := chunks.Purge(ctx, jetstream.WithPurgeSubject(events.ChunkSubject("f1"))); err != nil {
		t.Errorf("a purge of one file's chunks: %v", err)
	}
}

// Nothing but a chunk needs more than events.MaxRecord: every other stream and the
// job bucket refuse a larger message, so a flood fills them no faster with big ones.
func TestStreamsRefuseLargeMessages(t *testing.T) {
	js := stagetest.JetStream(t, stagetest.NewBroker(t))
	ctx := context.Background()
	big := make([]byte, events.MaxRecord+1)
	for _, subj := range []string{"zoom.event.recording.completed", events.FetchJobSubject("f1"), events.FileVerifiedSubject("f1"),
		events.JobSubject(events.HeartbeatKey(events.IdentityHook))} {
		var apiErr *jetstream.APIError
		if _, err := js.Publish(ctx, subj, big); !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum {
			t.Errorf("%d bytes on %s: %v, want the stream's refusal", len(big), subj, err)
		}
	}
	if _, err := js.Publish(ctx, events.ChunkSubject("f1"), make([]byte, events.MaxChunkData)); err != nil {
		t.Errorf("a chunk of %d bytes: %v", events.MaxChunkData, err)
	}
}
