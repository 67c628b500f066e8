package serviceaccount

import (
	"fmt"
	"slices"
	"strings"

	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
)

// One Google identity per job: each stage's key is for one scope, and the
// Workspace admin console's domain-wide delegation lists that scope alone for
// its client ID (docs/deploying.md, Google identities). The key-admin account, which only
// the one-off rotate-key holds, has no delegation at all.
const (
	DriveScope         = "https://www.googleapis.com/auth/drive"
	DriveMetadataScope = "https://www.googleapis.com/auth/drive.metadata.readonly"
	GmailSendScope     = "https://www.googleapis.com/auth/gmail.send"
	IAMScope           = "https://www.googleapis.com/auth/iam"
)

// Jobs is each stage's scope, and what it is for.
var Jobs = []Job{
	{events.IdentityUpload, DriveScope, "writing recordings into Drive"},
	{events.IdentityFetch, DriveMetadataScope, "reading each file's size and MD5 in Drive before the trash"},
	{events.IdentityNotify, GmailSendScope, "sending mails"},
}

// Job is one stage's Google identity.
type Job struct{ Stage, Scope, ForWhat string }

// JobOf is the stage's job.
func JobOf(stage string) Job {
	i := slices.IndexFunc(Jobs, func(j Job) bool { return j.Stage == stage })
	return Jobs[i]
}

// Outside are the scopes the stage's key must not get: the other jobs' and the
// IAM API's (as a Workspace user, who may hold roles in the project, it could
// manage keys).
func Outside(stage string) []string {
	var out []string
	for _, j := range Jobs {
		if j.Stage != stage {
			out = append(out, j.Scope)
		}
	}
	return append(out, IAMScope)
}

// Confined proves, for each scope outside the stage's job, that Google refuses
// the key in keyFile a token for it as the Workspace user subject: a refusal
// (unauthorized_client) is the pass, once Google gives the key its own scope as
// that user. It returns one line per scope that passed and one warning per scope
// that did not, naming the fix. Without a subject nothing can be proven this way,
// since Google gives a service account a token for any scope as itself (what it
// then reaches is what is shared with it): the warning says so.
func Confined(keyFile []byte, stage, subject string) (passed []string, warnings []error) {
	kf, err := ReadKeyFile(keyFile)
	if err != nil {
		return nil, []error{err}
	}
	own := JobOf(stage).Scope
	where := "Google Admin console > Security > Access and data control > API controls > Domain-wide delegation"
	if subject == "" {
		return nil, []error{fmt.Errorf("not proven that key %s of %s cannot reach %s: it acts as itself (no Workspace user set), "+
			"and Google gives a service account a token for any scope as itself; make sure client ID %s has no entry in %s, "+
			"and that nothing but the Drive folder is shared with %s", kf.ID, kf.Account, strings.Join(Outside(stage), ", "), kf.ClientID, where, kf.Account)}
	}
	token := func(scope string) error {
		k, err := FromJSON(keyFile, scope, subject)
		if err == nil {
			_, err = k.Token()
		}
		return err
	}
	// A refusal proves something only where the key gets its own scope as the
	// same user: else every scope is refused alike.
	if err := token(own); err != nil {
		return nil, []error{fmt.Errorf("not proven that key %s cannot reach %s: it gets no token for its own scope %s as %s either: %w",
			kf.ID, strings.Join(Outside(stage), ", "), own, subject, err)}
	}
	for _, scope := range Outside(stage) {
		err := token(scope)
		switch {
		case ErrorCode(err) == "unauthorized_client":
			passed = append(passed, fmt.Sprintf("Google refuses key %s a token for %s as %s", kf.ID, scope, subject))
		case err == nil:
			warnings = append(warnings, fmt.Errorf("google gave key %s a token for %s as %s, which %s's job (%s) does not need: "+
				"in %s, leave client ID %s (%s) with %s alone", kf.ID, scope, subject, stage, JobOf(stage).ForWhat, where, kf.ClientID, kf.Account, own))
		default:
			warnings = append(warnings, fmt.Errorf("not proven that key %s cannot get a token for %s as %s: %w", kf.ID, scope, subject, err))
		}
	}
	return passed, warnings
}

// ReportConfined is Confined on a check command's lines: each pass a line, each
// finding a warning.
func ReportConfined(checks *config.Checks, keyFile []byte, stage, subject string) {
	passed, warnings := Confined(keyFile, stage, subject)
	for _, p := range passed {
		checks.Report(p, nil)
	}
	for _, w := range warnings {
		checks.Warn(w)
	}
}
