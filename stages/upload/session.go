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
// asked where it stands on a resume, and fed the held bytes in multiples of 256 KiB.
// Drive's confirmations move the resume point; a session gone or refused is replaced.

// resume checks a saved session with Drive: how much it holds, or that it is gone.
func (f *fileUpload) resume(ctx context.Context) error {
	s := f.up.Get()
	if s.Generation < f.job.Generation {
		// fetch started the file over since: nothing of the older bytes counts.
		return f.up.Save(ctx, func(u *upState) { *u = upState{Generation: f.job.Generation} })
	}
	if s.Session == "" {
		return nil
	}
	if time.Since(s.SessionAt) > sessionLife {
		return f.sessionGone(ctx)
	}
	stored, done, err := f.st.res.put(ctx, s.Session, 0, nil, 0, -1)
	switch {
	case errors.Is(err, errSessionGone):
		return f.sessionGone(ctx)
	case err != nil:
		return err
	case stored < s.Offset:
		return fmt.Errorf("%w: Drive holds %d bytes, %d were confirmed", errRefetch, stored, s.Offset)
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
		AppProperties: tags(f.job, true), Description: describe(f.job, true, f.st.tz),
	}
	session, err := f.st.res.start(ctx, meta, int64(f.job.File.FileSize), meta.MimeType)
	if err != nil {
		return err // uploadFile tells a full Drive and a refused key by their types
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
		avail := f.heldEnd() - s.Offset
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
				return fmt.Errorf("%w: Drive went back from %d to %d bytes", errRefetch, s.Offset, stored)
			}
			f.complete = done
			return f.confirm(ctx, min(stored, f.heldEnd()))
		}
		switch a := classifyDrive(err); {
		case a == driveDailyCap || a == driveFull:
			f.st.pauseFor(ctx, a) // the session stays: it goes on once Drive takes uploads again
			continue
		case a == driveKeyRefused:
			return err // uploadFile says it
		case a == driveSessionGone || a == driveRefused:
			// The one place a session is replaced while sending: gone (expired), or
			// refused for a reason a new one may cure, counted.
			if a == driveRefused {
				if f.refusals++; f.refusals >= f.st.maxRefusals {
					return refusedError{driveErr(err)}
				}
				f.log.Warn("drive refused the session; starting a new one", "err", err, "refusals", f.refusals, "of", f.st.maxRefusals)
			}
			if err := f.sessionGone(ctx); err != nil {
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
			if err := f.confirm(ctx, min(stored, f.heldEnd())); err != nil {
				return err
			}
			if done != nil || total < 0 && f.heldEnd()-f.up.Get().Offset < quantum {
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

// sessionGone: the session expired (a week) or was refused. A new one must start
// from byte 0, which only the bytes in hand can give; else fetch sends them again.
func (f *fileUpload) sessionGone(ctx context.Context) error {
	s := f.up.Get()
	f.mu.Lock()
	fromZero := s.Offset == 0 && (len(f.held) == 0 || f.held[0].off == 0)
	f.mu.Unlock()
	f.complete = nil
	if err := f.up.Save(ctx, func(u *upState) { *u = upState{Generation: s.Generation} }); err != nil {
		return err
	}
	if !fromZero {
		return fmt.Errorf("%w: the Drive session is gone and its first bytes were acknowledged", errRefetch)
	}
	return nil
}

// refusedError: Drive refused the file in UPLOAD_MAX_REFUSALS sessions in a row,
// for a reason a new session does not cure.
type refusedError struct{ last *driveError }

func (e refusedError) Error() string {
	return "drive refused the file in every new session: " + e.last.g.Error()
}
