package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/api/drive/v3"

	"zoomarchive/shared/retry"
)

// The Drive side of one file: its resumable session is opened once per generation,
// asked where it stands on a resume, and fed the kept bytes in multiples of 256 KiB.
// Drive's confirmations move the resume point; dropSession is the one place a
// session is dropped, for one of these reasons.

// dropReason says why a file's Drive session is dropped (a metric label, a log field).
type dropReason string

const (
	dropNewGeneration dropReason = "new_generation" // fetch started the file over: the job or a chunk is of a newer generation
	dropExpired       dropReason = "expired"        // the session is older than sessionLife
	dropGone          dropReason = "gone"           // Drive answers 404 or 410 for the session
	dropRefused       dropReason = "refused"        // Drive refused a chunk for a reason a new session may cure; counted (upState.Refusals)
	dropDriveLost     dropReason = "drive_lost"     // Drive holds fewer bytes than it confirmed
	dropBytesGone     dropReason = "bytes_gone"     // the stream no longer has bytes the upload needs
	dropMismatch      dropReason = "mismatch"       // Drive's copy did not verify
)

// refetchError: the file's bytes must come again from Zoom (errRefetch), and its
// session is dropped for why.
type refetchError struct {
	why dropReason
	err error
}

func (e *refetchError) Error() string { return e.err.Error() }
func (e *refetchError) Unwrap() error { return e.err }

func refetchFor(why dropReason, format string, a ...any) error {
	return &refetchError{why, fmt.Errorf("%w: "+format, append([]any{errRefetch}, a...)...)}
}

// dropSession is the one place a file's Drive session is dropped: the resume point
// starts over at byte 0 of generation gen (fetch to be asked for it when refetch),
// keeping only the count of Drive's refusals of the file, so that a restart does
// not forget them. A drop of something (a session, confirmed bytes, a copy found)
// is logged and counted by why.
func (f *fileUpload) dropSession(ctx context.Context, why dropReason, gen int, refetch bool) error {
	old := f.up.Get()
	f.complete = nil
	err := f.up.Save(ctx, func(u *upState) {
		n := u.Refusals
		if why == dropRefused {
			n++
		}
		*u = upState{Generation: gen, Refetch: refetch, Refusals: n}
	})
	if err != nil || old.Session == "" && old.Offset == 0 && old.Existing == "" && why != dropRefused {
		return err
	}
	f.st.m.dropped.WithLabelValues(string(why)).Inc()
	f.log.Info("drive session dropped; starting over", "reason", why, "generation", gen, "confirmed", old.Offset,
		"refetch", refetch, "refusals", f.up.Get().Refusals)
	return nil
}

// resume checks a saved session with Drive: how much it holds, or that it is gone.
func (f *fileUpload) resume(ctx context.Context) error {
	s := f.up.Get()
	if s.Generation < f.job.Generation {
		// fetch started the file over since: nothing of the older bytes counts.
		return f.dropSession(ctx, dropNewGeneration, f.job.Generation, false)
	}
	if s.Session == "" {
		return nil
	}
	if time.Since(s.SessionAt) > sessionLife {
		return f.sessionGone(ctx, dropExpired)
	}
	stored, done, err := f.st.res.put(ctx, s.Session, 0, nil, 0, -1)
	switch {
	case errors.Is(err, errSessionGone):
		return f.sessionGone(ctx, dropGone)
	case err != nil:
		return err
	case stored < s.Offset:
		return refetchFor(dropDriveLost, "Drive holds %d bytes, %d were confirmed", stored, s.Offset)
	}
	f.complete, f.driveAt = done, stored
	f.log.Info("upload resumed", "drive_offset", stored, "confirmed", s.Offset)
	f.st.m.resumed.Inc()
	return nil
}

// open starts the Drive side once: a copy already in Drive (a replay, or a job
// record lost) is read through and compared instead of uploaded again; otherwise a
// session, saved before the first byte goes.
func (f *fileUpload) open(ctx context.Context) error {
	s := f.up.Get()
	if s.Session != "" || s.Existing != "" || s.Offset > 0 {
		return nil
	}
	if ex, err := f.st.existing(ctx, f.job.Key); err != nil {
		return err
	} else if ex != nil {
		f.log.Info("a copy is already in Drive; comparing instead of uploading", "drive_id", ex.Id)
		return f.up.Save(ctx, func(u *upState) { u.Existing = ex.Id })
	}
	// Nothing is asked of Drive while it takes no uploads (its daily cap, or full).
	if err := f.st.paused.Wait(ctx); err != nil {
		return err
	}
	folder, err := f.st.folderFor(ctx, f.job)
	if err != nil {
		return err
	}
	f.folder = folder
	part, err := f.st.part(ctx, f.job)
	if err != nil {
		return err
	}
	meta := &drive.File{
		Name: fileName(f.job, part, f.st.tz), MimeType: mimeType(f.job.File), Parents: []string{folder.ID},
		AppProperties: f.st.tagsFor(f.job, true), Description: describe(f.job, true, f.st.tz, ""),
	}
	session, err := f.st.res.start(ctx, meta, int64(f.job.File.FileSize), meta.MimeType)
	if err != nil {
		return err // uploadFile reads it with classifyDrive: the cap, a full Drive, a refused key
	}
	f.st.m.sessions.Inc()
	return f.up.Save(ctx, func(u *upState) { u.Session, u.SessionAt = session, time.Now().UTC() })
}

// send puts up to n bytes from the confirmed offset (a multiple of 256 KiB unless
// this is the end, total >= 0) and confirms what Drive says it stored.
func (f *fileUpload) send(ctx context.Context, n, total int64) error {
	for try := 0; ; try++ {
		if err := f.st.paused.Wait(ctx); err != nil {
			return err
		}
		s := f.up.Get()
		avail := f.keptEnd() - s.Offset
		if total < 0 {
			n = min(n, avail) / quantum * quantum
			if n == 0 {
				return nil
			}
		} else {
			n = avail
		}
		stored, done, err := f.st.res.put(ctx, s.Session, s.Offset, f.reader(s.Offset, n), n, total)
		if err == nil {
			f.st.m.bytes.Add(float64(n))
			if stored < s.Offset {
				return refetchFor(dropDriveLost, "Drive went back from %d to %d bytes", s.Offset, stored)
			}
			f.complete = done
			return f.confirm(ctx, min(stored, f.keptEnd()))
		}
		switch a := classifyDrive(err); {
		case a == driveDailyCap || a == driveFull:
			f.st.pauseFor(ctx, a) // the session stays: it goes on once Drive takes uploads again
			continue
		case a == driveKeyRefused:
			return err // uploadFile says it
		case a == driveSessionGone || a == driveRefused:
			// Gone (expired), or refused for a reason a new session may cure, counted
			// across restarts in the resume record.
			why := dropGone
			if a == driveRefused {
				why = dropRefused
				if n := f.up.Get().Refusals + 1; n >= f.st.maxRefusals {
					return refusedError{driveErr(err)}
				}
				f.log.Warn("drive refused the session; starting a new one", "err", err, "refusals", f.up.Get().Refusals+1, "of", f.st.maxRefusals)
			}
			if err := f.sessionGone(ctx, why); err != nil {
				return err
			}
			if err := f.open(ctx); err != nil {
				return err
			}
			continue
		case try >= 8 || ctx.Err() != nil:
			return err
		}
		f.st.m.retries.WithLabelValues(reason(err)).Inc()
		f.log.Info("chunk not confirmed; asking the session and retrying", "at", s.Offset, "try", try+1, "err", err)
		retry.Sleep(ctx, retry.Backoff(f.st.retryBase, try))
		// Ask what Drive holds: it may have stored some of the chunk, or all.
		if stored, done, err := f.st.res.put(ctx, s.Session, 0, nil, 0, total); err == nil && stored >= s.Offset {
			f.complete = done
			if err := f.confirm(ctx, min(stored, f.keptEnd())); err != nil {
				return err
			}
			if done != nil || total < 0 && f.keptEnd()-f.up.Get().Offset < quantum {
				return nil
			}
		}
	}
}

const quantum = 256 << 10 // Drive wants chunks in multiples of this

// reason labels a retry: Drive's reason or status, else the connection's fault.
func reason(err error) string {
	de := driveErr(err)
	switch {
	case de.reason() != "":
		return de.reason()
	case de != nil:
		return strconv.Itoa(de.status())
	}
	return "connection"
}

// sessionGone: the session cannot go on (why). A new one must start from byte 0,
// which only the bytes in hand can give; else fetch sends them again.
func (f *fileUpload) sessionGone(ctx context.Context, why dropReason) error {
	s := f.up.Get()
	f.mu.Lock()
	fromZero := s.Offset == 0 && (len(f.kept) == 0 || f.kept[0].off == 0)
	f.mu.Unlock()
	if !fromZero {
		return &refetchError{why, fmt.Errorf("%w: the Drive session is %s and its first bytes were acknowledged", errRefetch, why)}
	}
	return f.dropSession(ctx, why, s.Generation, false)
}

// refusedError: Drive refused the file in UPLOAD_MAX_REFUSALS sessions in a row,
// for a reason a new session does not cure.
type refusedError struct{ last *driveError }

func (e refusedError) Error() string {
	return "drive refused the file in every new session: " + e.last.g.Error()
}
