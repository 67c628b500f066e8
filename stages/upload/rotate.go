package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"
	"google.golang.org/api/drive/v3"
	"google.golang.org/api/gmail/v1"
	"google.golang.org/api/option"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
	"zoomarchive/shared/serviceaccount"
)

// upload rotate-key: a new key for the service account through the IAM API, put in
// use by upload and notify before the old one is deleted at Google. The new key
// waits beside the old (KEY.new, or --pending) until the end, so a run stopped anywhere loses no
// key: the next run takes it up instead of making another. When the new key does
// not work, or a stage does not take it, the old key stays in use and in its file,
// the new one is deleted, and an alert says so; the next success resolves it.

// rotation is one run of rotate-key.
type rotation struct {
	out         io.Writer
	path        string // GOOGLE_APPLICATION_CREDENTIALS, written in place
	pending     string // the new key until the end
	iamURL      string
	apiURL      string // GOOGLE_API_URL, for the Drive check
	folder      string // DRIVE_FOLDER_ID
	subject     string // DRIVE_IMPERSONATE
	gmailSender string
	kv          jetstream.KeyValue // the holders' heartbeats
	wait        time.Duration      // for the holders to take the key
	dryRun      bool
}

func rotateCommand(stdout io.Writer) config.Command {
	return config.Command{
		Name:  "rotate-key",
		Usage: "make a new Google key, put it in use in upload and notify, then delete the old one at Google",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "say what would be done; change nothing"},
			&cli.StringFlag{Name: "gmail-sender", Usage: "notify's GMAIL_SENDER: the new key must get a gmail.send token as this user before it is put in use"},
			&cli.DurationFlag{Name: "wait", Value: 2 * time.Minute, Usage: "how long upload and notify have to take the new key"},
			&cli.StringFlag{Name: "pending", Usage: "where the new key waits until the old one is deleted (default: the key file's path with .new)"},
		},
		Action: func(ctx context.Context, v *config.Values, c *cli.Context) error {
			iamURL := v.String(serviceaccount.IAMSetting.Name)
			st, rc, conn, err := dialed(ctx, v)
			if err != nil {
				return err
			}
			defer conn.Close()
			r := &rotation{out: stdout, path: rc.keyFile, pending: cmp.Or(c.String("pending"), rc.keyFile+".new"), iamURL: iamURL, apiURL: st.res.base, folder: st.root, subject: rc.subject,
				gmailSender: c.String("gmail-sender"), kv: conn.KV, wait: c.Duration("wait"), dryRun: c.Bool("dry-run")}
			done, err := r.run(ctx)
			switch {
			case r.dryRun:
			case err != nil:
				if aerr := bus.RaiseAlert(ctx, conn.JS, conn.KV, events.Alert{Kind: events.AlertGoogleKeyRotation,
					Message: "upload rotate-key could not rotate the Google key, and the key in use stays in use: " + err.Error()}); aerr != nil {
					st.log.Warn("cannot raise an alert", "kind", events.AlertGoogleKeyRotation, "err", aerr)
				}
			default:
				if aerr := bus.ClearAlert(ctx, conn.JS, conn.KV, events.AlertGoogleKeyRotation, done); aerr != nil {
					st.log.Warn("cannot resolve an alert", "kind", events.AlertGoogleKeyRotation, "err", aerr)
				}
			}
			return err
		},
	}
}

// run rotates the key and says what it did; done is the last line.
func (r *rotation) run(ctx context.Context) (done string, err error) {
	cur, err := os.ReadFile(r.path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", serviceaccount.Setting.Name, err)
	}
	old, err := serviceaccount.ReadKeyFile(cur)
	if err != nil {
		return "", fmt.Errorf("%s: %w", serviceaccount.Setting.Name, err)
	}
	keys, err := serviceaccount.IAM(ctx, cur, r.iamURL)
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
			fmt.Fprintf(r.out, "would wait for %v to use key %s, then delete key %s\n", events.GoogleKeyHolders, old.ID, replaces)
			return "", nil
		}
		if err := r.waitHolders(ctx, old.ID); err != nil {
			return "", fmt.Errorf("%w; run rotate-key again once they do", err)
		}
		return r.retire(ctx, keys, old.ID, replaces)
	}
	if r.dryRun {
		what := "make a new key"
		if newID != "" {
			what = "take up key " + newID + " from " + pending
		}
		fmt.Fprintf(r.out, "would %s, check it with Drive (folder %s as %s) and Gmail (%s), write it into %s, wait for %v to use it, then delete key %s\n",
			what, r.folder, cmp.Or(r.subject, "the service account"), cmp.Or(r.gmailSender, "not checked"), r.path, events.GoogleKeyHolders, old.ID)
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
	fmt.Fprintf(r.out, "key %s gets Drive (folder %s) and Gmail tokens\n", newID, r.folder)
	if err := config.WriteInPlace(r.path, newFile); err != nil {
		return undo(errors.Join(fmt.Errorf("cannot write %s: %w", r.path, err), config.WriteInPlace(r.path, cur)))
	}
	if err := r.waitHolders(ctx, newID); err != nil {
		return undo(errors.Join(fmt.Errorf("%w; the old key is back in %s", err, r.path), config.WriteInPlace(r.path, cur)))
	}
	return r.retire(ctx, keys, newID, old.ID)
}

// replacesSuffix names the file beside the pending key that says which key it
// replaces, for a run that stops once the new key is in use.
const replacesSuffix = ".replaces"

// retire deletes the old key at Google once the new one is in use everywhere.
func (r *rotation) retire(ctx context.Context, keys *serviceaccount.IAMKeys, newID, oldID string) (string, error) {
	if err := keys.Delete(ctx, oldID); err != nil {
		return "", fmt.Errorf("key %s is in use everywhere, but the old key %s was not deleted at Google: run rotate-key again: %w", newID, oldID, err)
	}
	r.forget()
	done := fmt.Sprintf("The Google key was rotated: key %s is in use by upload and notify, and the old key %s is deleted at Google.", newID, oldID)
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

// prove gets the new key a Drive token as the stage acts and reads the folder, and
// a gmail.send token as notify's sender. Google may take a moment to honour a new
// key, so a key it does not know yet (invalid_grant) is tried again for a minute.
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
	dk, err := serviceaccount.FromJSON(keyFile, drive.DriveScope, r.subject)
	if err != nil {
		return err
	}
	svc, err := drive.NewService(ctx, option.WithHTTPClient(driveClient(dk)), option.WithEndpoint(r.apiURL+"drive/v3/"))
	if err != nil {
		return err
	}
	if _, err := svc.Files.Get(r.folder).SupportsAllDrives(true).Fields("id").Context(ctx).Do(); err != nil {
		return fmt.Errorf("drive: %w", serviceaccount.Explain(err, drive.DriveScope, "check DRIVE_IMPERSONATE"))
	}
	if r.gmailSender == "" {
		return nil
	}
	gk, err := serviceaccount.FromJSON(keyFile, gmail.GmailSendScope, r.gmailSender)
	if err != nil {
		return err
	}
	if _, err := gk.Token(); err != nil {
		return fmt.Errorf("gmail: %w", serviceaccount.Explain(err, gmail.GmailSendScope, "check --gmail-sender"))
	}
	return nil
}

// waitHolders waits until every stage that holds the key reports id in its
// heartbeat. A stage that has not reported for two heartbeats is not running and
// reads the file when it starts; one that reports the key refused fails the wait.
func (r *rotation) waitHolders(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, r.wait)
	defer cancel()
	for {
		var waiting []string
		for _, stage := range events.GoogleKeyHolders {
			hb, found, err := bus.Get[events.Heartbeat](ctx, r.kv, events.HeartbeatKey(stage))
			switch {
			case err != nil && ctx.Err() == nil:
				return fmt.Errorf("cannot read %s's heartbeat: %w", stage, err)
			case !found || time.Since(hb.At) > 2*bus.HeartbeatEvery:
				continue
			case hb.Credentials[events.CredentialGoogleKey].ID == id:
				continue
			case hb.Credentials[events.CredentialGoogleKey].RefusedID == id:
				return fmt.Errorf("%s cannot use the new key: %s", stage, strings.Join(hb.Faults, "; "))
			}
			waiting = append(waiting, stage)
		}
		if len(waiting) == 0 {
			fmt.Fprintf(r.out, "upload and notify use key %s\n", id)
			return nil
		}
		if retry.Sleep(ctx, time.Second) != nil {
			return fmt.Errorf("%v did not take the new key within %s", waiting, r.wait)
		}
	}
}
