package main

import (
	"context"

	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
)

// zoomScope is a scope fetch needs, in Zoom's granular name and the classic one
// that covers it, and what it is needed for.
type zoomScope struct{ granular, classic, forWhat string }

var (
	scopesAlways = []zoomScope{
		{"cloud_recording:read:list_recording_files:admin", "recording:read:admin", "reading a recording's files"},
		{"cloud_recording:delete:meeting_recording:admin", "recording:write:admin", "moving an archived recording to Zoom's trash"},
	}
	scopeRecover  = zoomScope{"cloud_recording:update:recover_meeting_recordings:admin", "recording:write:admin", "taking a recording back out of the trash when a file of it comes late"}
	scopeSettings = zoomScope{"user:read:settings:admin", "user:read:admin", "knowing whether a host's transcript is still to come (ZOOM_TRANSCRIPT_WAIT)"}
	// scopeStorage is optional: without it the digest says Zoom's storage is not known.
	scopeStorage  = zoomScope{"report:read:cloud_recording:admin", "report:read:admin", "Zoom's cloud recording storage in the daily digest (optional)"}
	scopesListing = []zoomScope{
		{"cloud_recording:read:list_user_recordings:admin", "recording:read:admin", "the daily reconciliation and fetch backfill"},
		{"user:read:list_users:admin", "user:read:admin", "the daily reconciliation and fetch backfill"},
	}
)

// checkCommand proves the deployment as fetch sees it: the broker lets fetch in,
// Zoom gives the app a token with the scopes fetch uses, and the API takes it.
func checkCommand(stdout io.Writer) config.Command {
	return config.CheckCommand("fetch", "the broker as fetch, the Zoom app's token, its scopes and one API call", stdout,
		func(ctx context.Context, v *config.Values, checks *config.Checks) error {
			st, rc, err := configure(v, io.Discard)
			if err != nil {
				return err
			}
			checks.Report("broker: connected as fetch, the job bucket readable", bus.Reach(ctx, rc.bus, true))
			_, err = st.drive.files.Get(st.drive.root).SupportsAllDrives(true).Fields("id").Context(ctx).Do()
			checks.Report("Google Drive: fetch's key reads the archive folder's metadata (DRIVE_FOLDER_ID), to check Drive before the trash",
				serviceaccount.Explain(err, serviceaccount.DriveMetadataScope, "check DRIVE_IMPERSONATE, and that fetch's service account may read the folder"))
			if key, err := os.ReadFile(rc.keyFile); err == nil {
				serviceaccount.ReportConfined(checks, key, events.IdentityFetch, v.String("DRIVE_IMPERSONATE"))
			}
			_, err = st.zoom.accessToken(ctx)
			checks.Report("Zoom: a Server-to-Server OAuth token for the app", err)
			if err != nil {
				return nil
			}
			checks.Report("Zoom: the app's scopes", st.zoom.missingScopes(st.neededScopes()))
			if err := st.zoom.missingScopes([]zoomScope{scopeStorage}); err != nil {
				checks.Warn(fmt.Errorf("Zoom: the daily digest cannot show Zoom's storage: %w", err))
			}
			if !st.reconcileAt.Off {
				checks.Report("Zoom: the API takes the token (one page of users)", st.onePageOfUsers(ctx))
			}
			return nil
		})
}

// neededScopes are the scopes fetch uses with its settings.
func (st *stage) neededScopes() []zoomScope {
	need := scopesAlways
	if st.policy.action != "keep" && st.policy.transcriptWait > 0 && st.wantsType(events.FileTranscript) {
		need = append(need, scopeSettings)
	}
	if st.policy.action == "trash" {
		need = append(need, scopeRecover)
	}
	if !st.reconcileAt.Off {
		need = append(need, scopesListing...)
	}
	return need
}

// onePageOfUsers is the cheapest call that proves the API takes the token.
func (st *stage) onePageOfUsers(ctx context.Context) error {
	var page struct {
		TotalRecords int `json:"total_records"`
	}
	return st.zoom.call(ctx, "GET", "/users", url.Values{"page_size": {"1"}}, nil, &page)
}

// zoomReady proves the app as the stage starts: a token, the scopes fetch uses,
// and, when it lists users, one call.
func (st *stage) zoomReady(ctx context.Context) error {
	if _, err := st.zoom.accessToken(ctx); err != nil {
		return err
	}
	if err := st.zoom.missingScopes(st.neededScopes()); err != nil {
		return err
	}
	if !st.reconcileAt.Off {
		return st.onePageOfUsers(ctx)
	}
	return nil
}

// missingScopes names the scopes of need the token was not granted.
func (c *zoomClient) missingScopes(need []zoomScope) error {
	c.mu.Lock()
	granted := c.scopes
	c.mu.Unlock()
	var missing []string
	for _, s := range need {
		if !slices.Contains(granted, s.granular) && !slices.Contains(granted, s.classic) {
			missing = append(missing, fmt.Sprintf("%s (for %s)", s.granular, s.forWhat))
		}
	}
	if len(missing) > 0 {
		return credentialsRefused{"add in the Marketplace app's Scopes, then activate it again: " + strings.Join(missing, ", ")}
	}
	return nil
}
