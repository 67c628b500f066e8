package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
)

// Credentials: their ages in the digest, and two alerts. notify's own Google key's
// age is asked of the IAM API once a day (with roles/iam.serviceAccountViewer on
// its own account; without it, the day the key came into its file stands in). The
// other ages come with the stages' heartbeats: the day upload's and fetch's Google
// keys and a secret's file last changed, the day a broker identity was issued. A
// Google key older than KEY_MAX_AGE raises an alert that a rotation resolves; a
// stage that cannot take what its credential file now holds raises one that
// resolves once it can.

// keyAge is what notify knows of the Google key's age.
type keyAge struct {
	id      string    // the key asked about
	created time.Time // made at Google; zero when IAM would not say
	asked   time.Time
	why     error // why IAM would not say
}

// googleKeyAge asks IAM when the key in use was made: once a day, and again for a
// new key. The watch and the digest both ask.
func (st *stage) googleKeyAge(ctx context.Context) keyAge {
	st.keyAgeMu.Lock()
	defer st.keyAgeMu.Unlock()
	id := st.tokens.ID()
	if st.keyAge.id == id && st.now().Sub(st.keyAge.asked) < 24*time.Hour {
		return st.keyAge
	}
	st.keyAge = keyAge{id: id, asked: st.now()}
	b, err := os.ReadFile(st.keyFile)
	if err != nil {
		st.keyAge.why = err
		return st.keyAge
	}
	keys, err := serviceaccount.IAM(ctx, b, "", st.iamURL)
	if err == nil {
		st.keyAge.created, err = keys.Created(ctx, id)
	}
	if st.keyAge.why = err; err != nil {
		st.log.Warn("cannot learn the Google key's age from the IAM API", "key_id", id, "err", err)
	}
	return st.keyAge
}

// checkKeyAge alerts while a Google key is older than KEY_MAX_AGE: notify's own
// (its age at Google, or the day it came into its file when IAM will not say),
// and each other stage's key that has been in its file longer (its heartbeat
// says since when; a key is never younger at Google than in its file).
func (st *stage) checkKeyAge(ctx context.Context) {
	k := st.googleKeyAge(ctx)
	made, what := k.created, "was made at Google on"
	if made.IsZero() {
		made, what = st.keyInFile(ctx), "has been in its file since"
	}
	days := func(t time.Time) int { return int(st.now().Sub(t).Hours() / 24) }
	var old []string
	if !made.IsZero() && st.now().Sub(made) > st.keyMaxAge {
		old = append(old, fmt.Sprintf("notify's key %s %s %s, %d days ago", k.id, what, made.In(st.tz).Format("2 Jan 2006"), days(made)))
	}
	hbs, _ := st.heartbeats(ctx) // none: nothing known of the others' keys
	for _, stage := range events.GoogleKeyHolders {
		cred := hbs[stage].Credentials[events.CredentialGoogleKey]
		if stage != events.IdentityNotify && !cred.Since.IsZero() && st.now().Sub(cred.Since) > st.keyMaxAge {
			old = append(old, fmt.Sprintf("%s's key %s has been in its file since %s, %d days ago", stage, cred.ID, cred.Since.In(st.tz).Format("2 Jan 2006"), days(cred.Since)))
		}
	}
	if len(old) > 0 {
		st.raise(ctx, events.AlertGoogleKeyOld, fmt.Sprintf(
			"Google keys older than KEY_MAX_AGE (%d days): %s. Rotate them: on the server, "+
				"sudo docker compose run --rm rotate-key (docs/operating.md, Rotating credentials); this alert is over once new keys are in use.",
			int(st.keyMaxAge.Hours()/24), strings.Join(old, "; ")))
		return
	}
	if !made.IsZero() {
		st.clear(ctx, events.AlertGoogleKeyOld, fmt.Sprintf("The Google keys in use are younger than KEY_MAX_AGE; notify's (%s) is %d days old.", k.id, days(made)))
	}
}

// keyInFile is when notify's own heartbeat says the key in use came into its file.
func (st *stage) keyInFile(ctx context.Context) time.Time {
	hb, _, _ := bus.Get[events.Heartbeat](ctx, st.kv, events.HeartbeatKey(events.IdentityNotify)) // none: an age unknown
	return hb.Credentials[events.CredentialGoogleKey].Since
}

// checkCredentialFiles alerts, per stage, while a credential file holds what the
// stage could not take.
func (st *stage) checkCredentialFiles(ctx context.Context, hb events.Heartbeat) {
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(hb.Credentials)) {
		if p := hb.Credentials[name].Problem; p != "" {
			problems = append(problems, p)
		}
	}
	kind := events.AlertCredentialPrefix + hb.Stage
	if len(problems) == 0 {
		st.clear(ctx, kind, fmt.Sprintf("The %s stage uses what its credential files hold.", hb.Stage))
		return
	}
	st.raise(ctx, kind, fmt.Sprintf("The %s stage cannot use what its credential file now holds; it goes on with the one it had. %s "+
		"Fix the file (docs/operating.md, Rotating credentials); the stage takes it within seconds.", hb.Stage, strings.Join(problems, " ")))
}

// credentialLines are the digest's lines on every credential's age.
func (st *stage) credentialLines(ctx context.Context) []string {
	now := st.now()
	age := func(t time.Time) string {
		return fmt.Sprintf("%s (%d days ago)", t.In(st.tz).Format("2 Jan 2006"), int(now.Sub(t).Hours()/24))
	}
	var lines []string
	k := st.googleKeyAge(ctx)
	inFile := st.keyInFile(ctx)
	switch {
	case !k.created.IsZero():
		lines = append(lines, fmt.Sprintf("notify's Google key %s: made %s", k.id, age(k.created)))
	case inFile.IsZero():
		lines = append(lines, fmt.Sprintf("notify's Google key %s: its age is not known", k.id))
	case errors.Is(k.why, serviceaccount.ErrNotKeyAdmin):
		lines = append(lines, fmt.Sprintf("notify's Google key %s: in its file since %s; its age at Google is not known until the account may read its keys (%s on itself)",
			k.id, age(inFile), serviceaccount.KeyViewerRole))
	default:
		lines = append(lines, fmt.Sprintf("notify's Google key %s: in its file since %s", k.id, age(inFile)))
	}
	hbs, _ := st.heartbeats(ctx)
	for _, stage := range events.GoogleKeyHolders {
		if cred := hbs[stage].Credentials[events.CredentialGoogleKey]; stage != events.IdentityNotify && !cred.Since.IsZero() {
			lines = append(lines, fmt.Sprintf("%s's Google key %s: in its file since %s", stage, cred.ID, age(cred.Since)))
		}
	}
	for _, c := range []struct{ stage, name, what string }{
		{events.IdentityFetch, events.CredentialZoomClient, "Zoom client secret: its file changed"},
		{events.IdentityHook, events.CredentialWebhookSecret, "Zoom webhook secret: its file changed"},
	} {
		if cred, ok := hbs[c.stage].Credentials[c.name]; ok && !cred.Since.IsZero() {
			lines = append(lines, c.what+" "+age(cred.Since))
		}
	}
	var issued []string
	for _, stage := range events.Stages {
		if cred, ok := hbs[stage].Credentials[events.CredentialBroker]; ok {
			issued = append(issued, stage+" "+cred.Since.In(st.tz).Format("2 Jan 2006"))
		}
	}
	if len(issued) > 0 {
		lines = append(lines, "Broker identities issued: "+strings.Join(issued, ", "))
	}
	return lines
}
