package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/api/drive/v3"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
)

// A recording's folder shared with its host (DRIVE_SHARE_HOST), for addresses in
// DRIVE_SHARE_DOMAINS only, and with its production's Google Group (a rule's
// share_with_group), without Drive's mail unless DRIVE_SHARE_NOTIFY. The
// share is recorded at share.<meeting key> (events.FolderShare) before it is
// tried; every try looks at the folder's permissions first, so a crash between
// the folder and its share repeats the share once and never grants twice.
// Sharing never holds a file back: a refusal is counted, tried again later
// (retryShares), and after shareTries refusals given up, with one alert; notify
// reports it in the archived mail and the digest.

// shareTries: refusals before a share is given up and left to an admin.
const shareTries = 5

// sharing is what the settings ask.
type sharing struct {
	role    string // reader or commenter; "" is off
	domains map[string]bool
	notify  bool
}

func readSharing(v *config.Values) sharing {
	s := sharing{domains: map[string]bool{}, notify: v.OnOff("DRIVE_SHARE_NOTIFY")}
	switch role := v.String("DRIVE_SHARE_HOST"); role {
	case "off":
	case "reader", "commenter":
		s.role = role
	default:
		v.Invalid("DRIVE_SHARE_HOST", fmt.Sprintf("%q is not off, reader or commenter", role))
	}
	for _, d := range v.List("DRIVE_SHARE_DOMAINS") {
		s.domains[strings.ToLower(strings.TrimPrefix(d, "@"))] = true
	}
	if s.role != "" && len(s.domains) == 0 {
		v.Invalid("DRIVE_SHARE_DOMAINS", "DRIVE_SHARE_HOST shares with hosts of these domains only: name them (e.g. theatre.example), or set DRIVE_SHARE_HOST=off")
	}
	return s
}

// grants decides whom a recording's folder is shared with: its host, when the
// host's address is in an allowed domain.
func (s sharing) grants(r events.RecordingInfo) []events.Grant {
	host := strings.ToLower(strings.TrimSpace(r.HostEmail))
	_, domain, ok := strings.Cut(host, "@")
	if s.role == "" || !ok || !s.domains[domain] {
		return nil
	}
	return []events.Grant{{Email: host, Type: "user", Role: s.role}}
}

// share shares the recording's folder as the settings say, once; it tells only
// the log and the record how it went.
func (st *stage) share(ctx context.Context, rec events.RecordingInfo, folder folderRecord) {
	grants := st.sharing.grants(rec)
	if g := st.layout.place(rec, st.tz).group; g != nil {
		grants = append(grants, *g) // the production's Google Group
	}
	if len(grants) == 0 {
		return
	}
	fresh := events.FolderShare{Recording: rec, FolderID: folder.ID, FolderLink: folder.Link, With: grants, Notified: st.sharing.notify}
	st.tryShare(ctx, events.ShareKey(events.MeetingKey(rec.UUID)), &fresh)
}

// tryShare claims the share at key (made from fresh when absent) unless it is
// done, given up, waiting for its next try or another worker's, then grants what
// the folder lacks and records how it went.
func (st *stage) tryShare(ctx context.Context, key string, fresh *events.FolderShare) {
	now := time.Now().UTC()
	claimed := false
	s, err := bus.Update(ctx, st.kv, key, func(s *events.FolderShare, exists bool) error {
		claimed = false
		if !exists {
			if fresh == nil {
				return bus.ErrNoChange
			}
			*s = *fresh
		} else if s.Shared || s.GaveUp || now.Before(s.NextAt) || s.Owner != "" && now.Sub(s.Since) < time.Minute {
			return bus.ErrNoChange
		}
		s.Owner, s.Since, s.Updated = st.worker, now, now
		claimed = true
		return nil
	})
	if err != nil {
		st.log.Warn("cannot read the folder's sharing; trying later", "key", key, "err", err)
		st.pendShare(key)
		return
	}
	if !claimed {
		if s.FolderID != "" && !s.Shared && !s.GaveUp {
			st.pendShare(key) // its next try, or another worker's that may have died
		}
		return
	}
	log := st.log.With("meeting_uuid", s.Recording.UUID, "folder", s.FolderID)
	granted := st.grant(ctx, s)
	s, err = bus.Update(ctx, st.kv, key, func(r *events.FolderShare, _ bool) error {
		r.Owner, r.Updated = "", time.Now().UTC()
		if granted == nil {
			r.Shared = true
			return nil
		}
		r.Attempts++
		r.LastError = granted.Error()
		if de := driveErr(granted); de != nil && de.g.Message != "" {
			r.LastError = de.g.Message // Drive's words, for the admins' mails
		}
		r.NextAt = time.Now().Add(retry.Backoff(st.shareEvery, r.Attempts-1)).UTC()
		r.GaveUp = r.Attempts >= shareTries
		return nil
	})
	if err != nil {
		log.Warn("cannot record the folder's sharing; trying again later", "err", err)
		st.pendShare(key)
		return
	}
	switch {
	case granted == nil:
		st.m.shares.Inc()
		log.Info("folder shared", "with", whom(s.With))
		if _, open := st.mayBeOpen.LoadAndDelete(events.AlertDriveShare); open {
			if err := bus.ClearAlert(ctx, st.js, st.kv, events.AlertDriveShare, "Drive shares recordings' folders again."); err != nil {
				log.Warn("cannot resolve an alert", "kind", events.AlertDriveShare, "err", err)
			}
		}
	case s.GaveUp:
		st.m.shareFailures.Inc()
		log.Error("drive keeps refusing to share the folder; given up", "with", whom(s.With), "attempts", s.Attempts, "err", granted)
		st.alert(ctx, events.Alert{Kind: events.AlertDriveShare, Message: fmt.Sprintf(
			"Drive refused %d times to share the folder of %q with %s, and zoomarchive has stopped trying: %s. "+
				"The recording itself is archived. Share the folder by hand: %s. The daily digest lists every folder not shared.",
			s.Attempts, s.Recording.Topic, whom(s.With), s.LastError, s.FolderLink)})
	default:
		st.m.shareFailures.Inc()
		log.Warn("drive refused to share the folder; trying again later", "with", whom(s.With), "attempts", s.Attempts, "next", s.NextAt, "err", granted)
		st.pendShare(key)
	}
}

// grant looks at the folder's permissions and adds the grants it lacks.
func (st *stage) grant(ctx context.Context, s events.FolderShare) error {
	list, err := st.drive.Permissions.List(s.FolderID).SupportsAllDrives(true).Fields("permissions(id,type,role,emailAddress)").Context(ctx).Do()
	if err != nil {
		return err
	}
	has := map[string]bool{}
	for _, p := range list.Permissions {
		has[strings.ToLower(p.EmailAddress)] = true
	}
	for _, g := range s.With {
		if has[strings.ToLower(g.Email)] {
			continue // a crashed try got this far
		}
		_, err := st.drive.Permissions.Create(s.FolderID, &drive.Permission{Type: g.Type, Role: g.Role, EmailAddress: g.Email}).
			SendNotificationEmail(s.Notified).SupportsAllDrives(true).Fields("id").Context(ctx).Do()
		if err != nil {
			return fmt.Errorf("sharing with %s: %w", g.Email, err)
		}
	}
	return nil
}

func whom(gs []events.Grant) string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Email+" ("+g.Role+")")
	}
	return strings.Join(out, ", ")
}

// pendShare notes a share to try again.
func (st *stage) pendShare(key string) {
	st.mu.Lock()
	st.pendingShares[key] = true
	st.mu.Unlock()
}

// retryShares tries again, when their time comes, the shares Drive refused, and
// at start those a stopped process left unfinished.
func (st *stage) retryShares(ctx context.Context) {
	if st.sharing.role == "" && !st.layout.shares() {
		return
	}
	if keys, err := st.kv.ListKeysFiltered(ctx, events.ShareKey(">")); err == nil {
		for key := range keys.Keys() {
			if s, _, err := bus.Get[events.FolderShare](ctx, st.kv, key); err == nil && !s.Shared && !s.GaveUp {
				st.pendShare(key)
			}
		}
	} else {
		st.log.Warn("cannot look for unfinished shares", "err", err)
	}
	tick := time.NewTicker(st.shareEvery)
	defer tick.Stop()
	for {
		st.mu.Lock()
		var keys []string
		for key := range st.pendingShares {
			keys = append(keys, key)
		}
		clear(st.pendingShares)
		st.mu.Unlock()
		for _, key := range keys {
			s, found, err := bus.Get[events.FolderShare](ctx, st.kv, key)
			switch {
			case err != nil || found && !s.Shared && !s.GaveUp && time.Now().Before(s.NextAt):
				st.pendShare(key) // not yet
			case found && !s.Shared && !s.GaveUp:
				st.tryShare(ctx, key, nil)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
