package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"
	"google.golang.org/api/drive/v3"
	"google.golang.org/api/option"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
	"zoomarchive/shared/serviceaccount"
)

// upload rotate-key: a new key for each stage's service account through the IAM
// API, made as the key-admin account (GOOGLE_KEY_ADMIN_CREDENTIALS, which no
// running stage holds), put in use by the stage that holds it before the old one
// is deleted at Google. One key at a time: the new key waits beside the old
// (KEY.new, or in --pending) until the end, so a run stopped anywhere loses no
// key: the next run takes it up instead of making another. When the new key does
// not work, or its stage does not take it, the old key stays in use and in its
// file, the new one is deleted, and an alert says so; the next run that rotates
// every key resolves it.

// rotation is one key's rotation in a run of rotate-key.
type rotation struct {
	out         io.Writer
	stage       string // the stage that holds the key
	path        string // its key file, written in place
	pending     string // the new key until the end
	admin       []byte // the key-admin account's key
	iamURL      string
	apiURL      string // GOOGLE_API_URL, for the Drive check
	folder      string // DRIVE_FOLDER_ID
	subject     string // DRIVE_IMPERSONATE
	gmailSender string
	kv          jetstream.KeyValue // the holders' heartbeats
	wait        time.Duration      // for the holder to take the key
	dryRun      bool
}

// adminSetting is the key-admin account's key, for rotate-key alone.
var adminSetting = config.Setting{Name: "GOOGLE_KEY_ADMIN_CREDENTIALS",
	Usage: "rotate-key only: path of the key-admin account's key JSON, which may manage the stages' keys and nothing else (docs/deploying.md, Google identities)"}

func rotateCommand(stdout io.Writer) config.Command {
	return config.Command{
		Name:  "rotate-key",
		Usage: "make a new Google key for each stage's account, put it in use in that stage, then delete the old one at Google",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be done; change nothing"},
			&cli.StringSliceFlag{Name: "key", Usage: "STAGE=PATH: a stage's key file to rotate (upload, fetch, notify); repeat for each (default: upload's, GOOGLE_APPLICATION_CREDENTIALS)"},
			&cli.StringFlag{Name: "gmail-sender", Usage: "notify's GMAIL_SENDER: notify's new key must get a gmail.send token as this user before it is put in use"},
			&cli.DurationFlag{Name: "wait", Value: 2 * time.Minute, Usage: "how long each stage has to take its new key"},
			&cli.StringFlag{Name: "pending", Usage: "the folder where a new key waits until the old one is deleted, as STAGE.json (default: beside the key file, with .new)"},
		},
		Action: func(ctx context.Context, v *config.Values, c *cli.Context) error {
			held, err := heldKeys(c.StringSlice("key"), v.String(serviceaccount.Setting.Name))
			if err == nil && slices.ContainsFunc(held, func(h heldKey) bool { return h.stage == events.IdentityNotify }) && c.String("gmail-sender") == "" {
				err = errors.New("--gmail-sender: needed to prove notify's new key")
			}
			var admin []byte
			if err == nil {
				admin, err = readAdminKey(v.String(adminSetting.Name))
			}
			if err != nil {
				return err
			}
			st, rc, conn, err := dialed(ctx, v)
			if err != nil {
				return err
			}
			defer conn.Close()
			var failed []error
			var done []string
			for _, h := range held {
				pending := h.path + ".new"
				if dir := c.String("pending"); dir != "" {
					pending = filepath.Join(dir, h.stage+".json")
				}
				r := &rotation{out: stdout, stage: h.stage, path: h.path, pending: pending, admin: admin, iamURL: v.String(serviceaccount.IAMSetting.Name),
					apiURL: st.res.base, folder: st.root, subject: rc.subject, gmailSender: c.String("gmail-sender"), kv: conn.KV, wait: c.Duration("wait"), dryRun: c.Bool("dry-run")}
				d, err := r.run(ctx)
				if err != nil {
					failed = append(failed, fmt.Errorf("%s's key: %w", h.stage, err))
				}
				done = append(done, d)
			}
			err = errors.Join(failed...)
			switch {
			case c.Bool("dry-run"):
			case err != nil:
				if aerr := bus.RaiseAlert(ctx, conn.JS, conn.KV, events.Alert{Kind: events.AlertGoogleKeyRotation,
					Message: "upload rotate-key could not rotate a Google key, and each key it could not rotate stays in use: " + err.Error()}); aerr != nil {
					st.log.Warn("cannot raise an alert", "kind", events.AlertGoogleKeyRotation, "err", aerr)
				}
			default:
				if aerr := bus.ClearAlert(ctx, conn.JS, conn.KV, events.AlertGoogleKeyRotation, strings.Join(done, " ")); aerr != nil {
					st.log.Warn("cannot resolve an alert", "kind", events.AlertGoogleKeyRotation, "err", aerr)
				}
			}
			return err
		},
	}
}

// heldKey is a stage's key file.
type heldKey struct{ stage, path string }

// heldKeys reads the --key flags: STAGE=PATH, each stage one that holds a key.
func heldKeys(flags []string, uploadKey string) ([]heldKey, error) {
	if len(flags) == 0 {
		return []heldKey{{events.IdentityUpload, uploadKey}}, nil
	}
	var held []heldKey
	for _, f := range flags {
		stage, path, ok := strings.Cut(f, "=")
		switch {
		case !ok || path == "" || !slices.Contains(events.GoogleKeyHolders, stage):
			return nil, fmt.Errorf("--key %q: want STAGE=PATH, STAGE one of %v", f, events.GoogleKeyHolders)
		case slices.ContainsFunc(held, func(h heldKey) bool { return h.stage == stage }):
			return nil, fmt.Errorf("--key: %s named twice", stage)
		}
		held = append(held, heldKey{stage, path})
	}
	return held, nil
}

// readAdminKey reads the key-admin account's key.
func readAdminKey(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%s: required for rotate-key: the key-admin account's key (docs/deploying.md, Google identities)", adminSetting.Name)
	}
	b, err := os.ReadFile(path)
	if err == nil {
		_, err = serviceaccount.ReadKeyFile(b)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", adminSetting.Name, err)
	}
	return b, nil
}

// run rotates the key and says what it did; done is the last line.
func (r *rotation) run(ctx context.Context) (done string, err error) {
	cur, err := os.ReadFile(r.path)
	if err != nil {
		return "", err
	}
	old, err := serviceaccount.ReadKeyFile(cur)
	if err != nil {
		return "", fmt.Errorf("%s: %w", r.path, err)
	}
	keys, err := serviceaccount.IAM(ctx, r.admin, old.Account, r.iamURL)
	if err != nil {
		return "", err
	}
	list, err := keys.List(ctx)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(r.out, "service account %s has %d keys:\n", old.Account, len(list))
	for _, k := range list {
		inUse := ""
		if k.ID == old.ID {
			inUse = " (in use)"
		}
		fmt.Fprintf(r.out, "  %s made %s%s\n", k.ID, k.Created.Format(time.DateOnly), inUse)
	}
	if !slices.ContainsFunc(list, func(k serviceaccount.AccountKey) bool { return k.ID == old.ID }) {
		return "", fmt.Errorf("the key in use (%s) is not among the account's keys at Google: deleted already? Put a key that exists in %s", old.ID, r.path)
	}
	pending := r.pending
	newFile, newID, replaces := r.takeUp(old, list)
	if replaces != "" { // the file holds the new key already; the old one is left to delete
		if r.dryRun {
			fmt.Fprintf(r.out, "would wait for %s to use key %s, then delete key %s\n", r.stage, old.ID, replaces)
			return "", nil
		}
		if err := r.waitHolder(ctx, old.ID); err != nil {
			return "", fmt.Errorf("%w; run rotate-key again once it does", err)
		}
		return r.retire(ctx, keys, old.ID, replaces)
	}
	if r.dryRun {
		what := "make a new key"
		if newID != "" {
			what = "take up key " + newID + " from " + pending
		}
		fmt.Fprintf(r.out, "would %s, check it (%s), write it into %s, wait for %s to use it, then delete key %s\n",
			what, r.proof(), r.path, r.stage, old.ID)
		return "", nil
	}
	if newID == "" {
		k, file, err := keys.Create(ctx)
		if err != nil {
			return "", err
		}
		// The key first: a key whose private half is nowhere is no use, and is
		// not left at Google.
		err = config.WriteAtomic(pending, file, 0o600)
		if err == nil {
			err = config.WriteAtomic(pending+replacesSuffix, []byte(old.ID), 0o600)
		}
		if err != nil {
			return "", errors.Join(fmt.Errorf("cannot keep the new key in %s: %w", pending, err), keys.Delete(ctx, k.ID), r.forget())
		}
		newFile, newID = file, k.ID
		fmt.Fprintf(r.out, "made key %s (kept in %s until the end)\n", newID, pending)
	}
	undo := func(why error) (string, error) {
		return "", errors.Join(why, keys.Delete(ctx, newID), r.forget())
	}
	if err := r.prove(ctx, newFile); err != nil {
		return undo(fmt.Errorf("the new key %s does not work (deleted again; the key in use is unchanged): %w", newID, err))
	}
	fmt.Fprintf(r.out, "key %s works: %s\n", newID, r.proof())
	if err := config.WriteInPlace(r.path, newFile); err != nil {
		return undo(errors.Join(fmt.Errorf("cannot write %s: %w", r.path, err), config.WriteInPlace(r.path, cur)))
	}
	if err := r.waitHolder(ctx, newID); err != nil {
		return undo(errors.Join(fmt.Errorf("%w; the old key is back in %s", err, r.path), config.WriteInPlace(r.path, cur)))
	}
	return r.retire(ctx, keys, newID, old.ID)
}

// replacesSuffix names the file beside the pending key that says which key it
// replaces, for a run that stops once the new key is in use.
const replacesSuffix = ".replaces"

// retire deletes the old key at Google once the new one is in use by its stage.
func (r *rotation) retire(ctx context.Context, keys *serviceaccount.IAMKeys, newID, oldID string) (string, error) {
	if err := keys.Delete(ctx, oldID); err != nil {
		return "", fmt.Errorf("key %s is in use by %s, but the old key %s was not deleted at Google: run rotate-key again: %w", newID, r.stage, oldID, err)
	}
	r.forget()
	done := fmt.Sprintf("The %s stage's Google key was rotated: key %s is in use, and the old key %s is deleted at Google.", r.stage, newID, oldID)
	fmt.Fprintln(r.out, done)
	return done, nil
}

// forget removes what a run keeps until its end.
func (r *rotation) forget() error {
	for _, f := range []string{r.pending, r.pending + replacesSuffix} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// takeUp is what an earlier run that did not finish left in pending, when Google
// still has it: a key made but not in use yet, or (replaces set) the key in use
// now, whose predecessor is still to delete. What is of no use is removed.
func (r *rotation) takeUp(old serviceaccount.KeyFile, list []serviceaccount.AccountKey) (file []byte, id, replaces string) {
	pending := r.pending
	b, err := os.ReadFile(pending)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", ""
	}
	atGoogle := func(id string) bool {
		return slices.ContainsFunc(list, func(a serviceaccount.AccountKey) bool { return a.ID == id })
	}
	k, kerr := serviceaccount.ReadKeyFile(b)
	prev, _ := os.ReadFile(pending + replacesSuffix)
	switch {
	case err != nil || kerr != nil || k.Account != old.Account || !atGoogle(k.ID):
	case k.ID != old.ID:
		fmt.Fprintf(r.out, "taking up key %s, made by a run that did not finish (%s)\n", k.ID, pending)
		return b, k.ID, ""
	case len(prev) > 0 && string(prev) != old.ID && atGoogle(string(prev)):
		fmt.Fprintf(r.out, "finishing a run that put key %s in use and did not delete key %s\n", k.ID, prev)
		return nil, "", string(prev)
	}
	if !r.dryRun {
		r.forget()
	}
	return nil, "", ""
}

// proof says how the new key is proven: its job's scope, as the stage acts.
func (r *rotation) proof() string {
	if r.stage == events.IdentityNotify {
		return "a gmail.send token as " + r.gmailSender
	}
	return fmt.Sprintf("folder %s read with scope %s as %s", r.folder, serviceaccount.JobOf(r.stage).Scope, cmp.Or(r.subject, "the service account"))
}

// prove gets the new key a token for its job's scope as its stage acts: upload's
// and fetch's read the folder, notify's is granted for GMAIL_SENDER. Google may
// take a moment to honour a new key, so a key it does not know yet
// (invalid_grant) is tried again for a minute.
func (r *rotation) prove(ctx context.Context, keyFile []byte) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for try := 0; ; try++ {
		err := r.proveOnce(ctx, keyFile)
		if err == nil || serviceaccount.ErrorCode(err) != "invalid_grant" {
			return err
		}
		if serr := retry.Sleep(ctx, min(retry.Backoff(time.Second, try), 10*time.Second)); serr != nil {
			return err
		}
	}
}

func (r *rotation) proveOnce(ctx context.Context, keyFile []byte) error {
	scope := serviceaccount.JobOf(r.stage).Scope
	if r.stage == events.IdentityNotify {
		gk, err := serviceaccount.FromJSON(keyFile, scope, r.gmailSender)
		if err != nil {
			return err
		}
		if _, err := gk.Token(); err != nil {
			return fmt.Errorf("gmail: %w", serviceaccount.Explain(err, scope, "check --gmail-sender"))
		}
		return nil
	}
	dk, err := serviceaccount.FromJSON(keyFile, scope, r.subject)
	if err != nil {
		return err
	}
	svc, err := drive.NewService(ctx, option.WithHTTPClient(driveClient(dk)), option.WithEndpoint(r.apiURL+"drive/v3/"))
	if err != nil {
		return err
	}
	if _, err := svc.Files.Get(r.folder).SupportsAllDrives(true).Fields("id").Context(ctx).Do(); err != nil {
		return fmt.Errorf("drive: %w", serviceaccount.Explain(err, scope, "check DRIVE_IMPERSONATE"))
	}
	return nil
}

// waitHolder waits until the stage that holds the key reports id in its
// heartbeat. A stage that has not reported for two heartbeats is not running and
// reads the file when it starts; one that reports the key refused fails the wait.
func (r *rotation) waitHolder(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, r.wait)
	defer cancel()
	for {
		hb, found, err := bus.Get[events.Heartbeat](ctx, r.kv, events.HeartbeatKey(r.stage))
		switch {
		case err != nil && ctx.Err() == nil:
			return fmt.Errorf("cannot read %s's heartbeat: %w", r.stage, err)
		case err == nil && (!found || time.Since(hb.At) > 2*bus.HeartbeatEvery):
			fmt.Fprintf(r.out, "%s is not running; it reads key %s when it starts\n", r.stage, id)
			return nil
		case err == nil && hb.Credentials[events.CredentialGoogleKey].ID == id:
			fmt.Fprintf(r.out, "%s uses key %s\n", r.stage, id)
			return nil
		case hb.Credentials[events.CredentialGoogleKey].RefusedID == id:
			return fmt.Errorf("%s cannot use the new key: %s", r.stage, strings.Join(hb.Faults, "; "))
		}
		if retry.Sleep(ctx, time.Second) != nil {
			return fmt.Errorf("%s did not take the new key within %s", r.stage, r.wait)
		}
	}
}
