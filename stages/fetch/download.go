package main

import (
	"context"
	"crypto/md5"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
)

// A file job: download from Zoom and publish the bytes, in order, as chunk messages;
// then a final message with the size and digests. Progress (offset and hash state)
// is checkpointed after every chunk under a lease, so a restarted fetch continues
// with an HTTP Range request where the last one stopped.

// errCodeMaxBytes is JetStream's refusal when CHUNKS holds CHUNK_WINDOW bytes.
const errCodeMaxBytes jetstream.ErrorCode = 10077

var (
	errNoResume     = errors.New("zoom cannot resume this download; starting the file over")
	errBadState     = errors.New("the checkpoint's hash state does not read back; starting the file over")
	errUnauthorized = errors.New("zoom refused the download token")
	errBadLength    = errors.New("zoom sent a different number of bytes than file_size")
	errStalled      = errors.New("no bytes for ZOOM_STALL_TIMEOUT")
	errFileGone     = errors.New("zoom has no such file (404); the recording may have been trashed or deleted")
)

// downloadStatus is a download answered with a status a quick retry may get past
// (429, 5xx).
type downloadStatus int

func (s downloadStatus) Error() string { return fmt.Sprintf("zoom answered %d", int(s)) }

// permanent marks errors a quick retry cannot fix; the attempt fails.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// progress is fetch's resume point for one file (fetch.<key> in the job bucket),
// held under a lease.
type progress struct {
	Generation int    `json:"generation"`
	Offset     int64  `json:"offset"`
	MD5        []byte `json:"md5_state,omitempty"` // the MD5 state over bytes [0, Offset)
	Restart    bool   `json:"restart,omitempty"`   // the next attempt starts over
}

type checkpoint = bus.Leased[progress]

// fetchJob handles one FETCH_JOBS message.
func (st *stage) fetchJob(ctx context.Context, msg jetstream.Msg) {
	key := events.FileKeyOf(msg.Subject())
	restart := msg.Headers().Get(events.HeaderRestart) == "true"
	log := st.log.With("file_key", key)
	// The lease first, then the job: read the other way round, a worker that held
	// the file could finish it in between, and this one would start it again.
	cp, wait, err := bus.Claim[progress](ctx, st.kv, events.FetchProgressKey(key), st.worker, st.leaseTTL)
	switch {
	case err != nil:
		log.Warn("cannot claim the file; will retry", "err", err)
		msg.NakWithDelay(5 * time.Second)
		return
	case cp == nil:
		msg.NakWithDelay(wait) // another worker holds it; look again when its lease ends
		return
	}
	job, found, err := bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(key))
	switch {
	case err != nil:
		log.Warn("job unreadable; will retry", "err", err)
		cp.Release(ctx)
		msg.NakWithDelay(5 * time.Second)
		return
	case !found || job.State == events.JobFailed:
		cp.Release(ctx) // what it holds (a mark to start over) is for a replay
		if err := bus.AnnounceFailure(ctx, st.js, st.kv, job); err != nil {
			log.Warn("cannot publish the failure; will retry", "err", err)
			msg.NakWithDelay(5 * time.Second)
			return
		}
		msg.Ack()
		return
	case job.State == events.JobVerified:
		cp.Delete(ctx)
		msg.Ack()
		return
	}
	// What is downloaded, from where and how long it is, is fetch's own record of
	// Zoom's listing (facts.File); the job's copy is upload's to write too.
	facts, err := st.factsOf(ctx, job)
	switch {
	case errors.As(err, new(permanent)):
		st.attemptFailed(ctx, msg, cp, job, err, log)
		return
	case err != nil:
		log.Warn("the file's facts unreadable; will retry", "err", err)
		cp.Release(ctx)
		msg.NakWithDelay(5 * time.Second)
		return
	}
	log = log.With("meeting_uuid", job.Recording.UUID, "file_id", facts.File.ID, "file_type", facts.File.FileType)
	if job.State == events.JobFetched && !restart {
		if cp.Get().Offset == 0 && job.Size > 0 {
			// A second work message for a file done: its resume point went with the
			// confirmed final message.
			cp.Delete(ctx)
			msg.Ack()
			return
		}
		// Fetched before a crash that came before the final message was confirmed.
		st.finish(ctx, msg, cp, job, facts.Planned, log)
		return
	}
	if p := cp.Get(); restart || p.Restart || p.Generation != job.Generation {
		if job, err = st.newGeneration(ctx, cp, job); err != nil {
			log.Warn("cannot start the file over; will retry", "err", err)
			cp.Release(ctx)
			msg.NakWithDelay(5 * time.Second)
			return
		}
	}
	job, err = st.setJob(ctx, key, func(j *events.FileJob) { j.State = events.JobFetching })
	if err != nil {
		cp.Release(ctx)
		msg.NakWithDelay(5 * time.Second)
		return
	}

	// Keep the job message and the lease alive through long downloads and full windows.
	hctx, stopBeat := context.WithCancel(ctx)
	go cp.Heartbeat(hctx, func() { msg.InProgress() })
	start, from := time.Now(), cp.Get().Offset
	err = st.download(ctx, cp, &job, facts.File)
	stopBeat()
	switch {
	case err == nil:
		log.Info("file fetched", "bytes", cp.Get().Offset, "resumed_at", from, "took", time.Since(start).Round(time.Millisecond))
		st.finish(ctx, msg, cp, job, facts.Planned, log)
	case ctx.Err() != nil:
		// Stopping: the checkpoint stays, and the next fetch resumes at once.
		cp.Release(context.Background())
		msg.Nak()
	case errors.Is(err, bus.ErrLeaseLost):
		log.Warn("another worker took the file over; leaving it to it")
		msg.NakWithDelay(st.leaseTTL)
	case refusal(err):
		// Not this file's fault: it waits as for a second attempt, its attempts
		// untouched, until Zoom takes the app again (an alert says so).
		cp.Release(context.Background())
		msg.NakWithDelay(st.delays[0])
	case errors.Is(err, errDailyLimit):
		// Nor is a daily limit: the file waits for Zoom's reset, attempts untouched.
		cp.Release(context.Background())
		msg.NakWithDelay(max(time.Until(st.zoom.pace.Until()), st.delays[0]))
	default:
		st.attemptFailed(ctx, msg, cp, job, err, log)
	}
}

// digestAt is the MD5 of the bytes before the resume point: the one pass over the
// file's bytes that proves the copy (docs/pipeline.md, upload). A state that does not read
// back cannot be resumed: the file starts over (errBadState).
func digestAt(p progress) (hash.Hash, error) {
	md := md5.New()
	if p.Offset == 0 {
		return md, nil
	}
	if err := md.(encoding.BinaryUnmarshaler).UnmarshalBinary(p.MD5); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadState, err)
	}
	return md, nil
}

// advance records that the bytes up to offset are in CHUNKS, with the MD5 state.
func advance(ctx context.Context, cp *checkpoint, offset int64, md hash.Hash) error {
	state, err := md.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err // crypto/md5 always marshals
	}
	return cp.Save(ctx, func(p *progress) { p.Offset, p.MD5 = offset, state })
}

// newGeneration starts the file over: its chunks so far are purged, the generation
// goes up (upload starts a new Drive session when it sees it), the offset goes to 0.
func (st *stage) newGeneration(ctx context.Context, cp *checkpoint, job events.FileJob) (events.FileJob, error) {
	s, err := st.js.Stream(ctx, events.StreamChunks)
	if err != nil {
		return job, err
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(events.ChunkSubject(job.Key))); err != nil {
		return job, err
	}
	gen := max(job.Generation, cp.Get().Generation) + 1
	job, err = st.setJob(ctx, job.Key, func(j *events.FileJob) {
		j.Generation, j.State, j.Size, j.MD5 = gen, events.JobFetching, 0, ""
	})
	if err != nil {
		return job, err
	}
	return job, cp.Save(ctx, func(p *progress) { *p = progress{Generation: gen} })
}

// download runs one attempt: quick retries for what a retry can fix (5xx, cuts,
// stalls, 429), each resuming from the checkpoint.
func (st *stage) download(ctx context.Context, cp *checkpoint, job *events.FileJob, file events.RecordingFile) error {
	token := "" // the S2S token, until Zoom wants a download_access_token
	restored := false
	for try := 0; ; try++ {
		err := st.stream(ctx, cp, job, file, token)
		var perm permanent
		switch {
		case err == nil || ctx.Err() != nil || errors.Is(err, bus.ErrLeaseLost) || refusal(err) || errors.Is(err, errDailyLimit):
			return err
		case errors.Is(err, errUnauthorized) && token == "":
			_, token, err = st.zoom.recording(ctx, job.Recording.UUID, true)
			if err != nil {
				return fmt.Errorf("download refused, and no download_access_token: %w", err)
			}
			st.m.retries.WithLabelValues("download_token").Inc()
			continue
		case errors.Is(err, errFileGone) && !restored:
			if err := st.restoreForLateFile(ctx, *job); err != nil {
				return err
			}
			restored = true
			continue
		case errors.Is(err, errNoResume) || errors.Is(err, errBadState):
			st.m.retries.WithLabelValues(retryReason(err)).Inc()
			if *job, err = st.newGeneration(ctx, cp, *job); err != nil {
				return err
			}
			continue
		case errors.As(err, &perm) || try >= 5:
			return err
		}
		st.m.retries.WithLabelValues(retryReason(err)).Inc()
		st.log.Info("download interrupted; resuming", "file_key", job.Key, "meeting_uuid", job.Recording.UUID,
			"at", cp.Get().Offset, "try", try+1, "err", err)
		retry.Sleep(ctx, retry.Backoff(st.zoom.retryBase, try))
	}
}

// restoreForLateFile takes a recording zoomarchive trashed back out of Zoom's
// trash when Zoom no longer serves a file of it that must be fetched after all: one
// that came late, or one whose Drive copy was deleted (Lost). The recording is
// opened again, so that it goes back to the trash once the file is verified. Any
// other 404 stays final.
func (st *stage) restoreForLateFile(ctx context.Context, job events.FileJob) error {
	mkey := events.MeetingKey(job.Recording.UUID)
	rec, _, err := bus.Get[events.RecordingJob](ctx, st.kv, events.RecordingJobKey(mkey))
	switch {
	case err != nil:
		return err
	case !slices.Contains(rec.Late, job.Key) && !job.Lost:
		return permanent{errFileGone}
	case rec.ZoomAction == events.ZoomDeleted:
		return permanent{fmt.Errorf("%w: zoomarchive had deleted the recording from Zoom for good", errFileGone)}
	case rec.ZoomAction != events.ZoomTrashed:
		return permanent{errFileGone}
	}
	if err := st.zoom.recover(ctx, job.Recording.UUID); errors.Is(err, errGone) {
		return permanent{fmt.Errorf("%w: the recording is no longer in Zoom's trash", errFileGone)}
	} else if err != nil {
		return err
	}
	_, err = bus.Update(ctx, st.kv, events.RecordingJobKey(mkey), func(r *events.RecordingJob, _ bool) error {
		r.ZoomAction, r.Updated = events.ZoomRestored, time.Now().UTC()
		if !slices.Contains(r.Late, job.Key) {
			r.Late = append(r.Late, job.Key)
		}
		if r.State == events.RecArchived {
			r.State = events.RecArchiving // back to the trash once the file is verified
		}
		return nil
	})
	st.log.Warn("the recording taken back out of Zoom's trash to fetch a file of it", "file_key", job.Key,
		"meeting_uuid", job.Recording.UUID, "file_type", job.File.FileType, "lost_from_drive", job.Lost)
	return err
}

func retryReason(err error) string {
	var status downloadStatus
	var zerr *zoomError
	var a answer
	switch {
	case errors.Is(err, errStalled):
		return "stalled"
	case errors.Is(err, errNoResume):
		return "no_range"
	case errors.Is(err, errBadState):
		return "bad_checkpoint"
	case errors.As(err, &status):
		a = classify(int(status), nil, 0)
	case errors.As(err, &zerr):
		a = zerr.answer
	}
	switch a {
	case answerPerSecond, answerDaily:
		return "rate_limited"
	case answerTransient:
		return "server_error"
	}
	return "connection"
}

// stream downloads from the checkpoint's offset to the end, publishing as it reads.
func (st *stage) stream(ctx context.Context, cp *checkpoint, job *events.FileJob, file events.RecordingFile, token string) error {
	offset, size := cp.Get().Offset, int64(file.FileSize)
	if size > 0 && offset == size {
		// Every byte was published before a crash or a lost lease; Zoom would
		// answer 416 to a Range from the end.
		return nil
	}
	bearer := token
	if bearer == "" {
		var err error
		if bearer, err = st.zoom.accessToken(ctx); err != nil {
			return err
		}
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	resp, answer, err := st.zoom.download(sctx, file.DownloadURL, offset, bearer)
	if err != nil {
		if errors.As(err, new(hostRefused)) {
			return permanent{err}
		}
		return err
	}
	defer resp.Body.Close()
	switch s := resp.StatusCode; {
	case s == http.StatusOK && offset > 0:
		return errNoResume
	case s == http.StatusPartialContent:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", offset)) {
			return errNoResume
		}
	case s == http.StatusOK:
	case s == http.StatusRequestedRangeNotSatisfiable && resp.Header.Get("Content-Range") == fmt.Sprintf("bytes */%d", offset):
		return nil // a file of unknown size, and every byte of it published already
	case answer == answerRefused:
		// Not necessarily an expired token: downloads may want the download token.
		// Asking for it goes through the API, which renews an expired token.
		return errUnauthorized
	case answer == answerGone:
		return permanent{errFileGone}
	case answer == answerDaily:
		return fmt.Errorf("download: %w", errDailyLimit)
	case answer == answerPerSecond || answer == answerTransient:
		return downloadStatus(s)
	default:
		return permanent{fmt.Errorf("zoom answered %d to the download", s)}
	}
	if size > 0 && resp.ContentLength >= 0 && offset+resp.ContentLength != size {
		return permanent{fmt.Errorf("%w: %d announced, file_size %d", errBadLength, offset+resp.ContentLength, size)}
	}

	idle := time.AfterFunc(st.stall, func() { cancel(errStalled) })
	defer idle.Stop()
	md, err := digestAt(cp.Get())
	if err != nil {
		return err
	}
	buf := make([]byte, st.chunk)
	for {
		n, rerr := readFull(resp.Body, buf, func() { idle.Reset(st.stall) })
		if n > 0 {
			if size > 0 && offset+int64(n) > size {
				return permanent{fmt.Errorf("%w: more than %d bytes", errBadLength, size)}
			}
			if err := st.publishChunk(ctx, cp, job, offset, buf[:n]); err != nil {
				return err
			}
			md.Write(buf[:n])
			offset += int64(n)
			st.m.bytes.Add(float64(n))
			if err := advance(ctx, cp, offset, md); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if cause := context.Cause(sctx); errors.Is(cause, errStalled) {
				return errStalled
			}
			return fmt.Errorf("download cut at byte %d: %w", offset, redact(rerr))
		}
	}
	if size > 0 && offset != size {
		return permanent{fmt.Errorf("%w: %d received, file_size %d", errBadLength, offset, size)}
	}
	return nil
}

// readFull fills buf unless the body ends or fails first; io.EOF only at a clean end.
func readFull(r io.Reader, buf []byte, progress func()) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if k > 0 {
			progress()
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// publishChunk puts one chunk into CHUNKS; while the window is full it waits,
// renewing its lease, and sends the same chunk again: order is kept and nothing is lost.
func (st *stage) publishChunk(ctx context.Context, cp *checkpoint, job *events.FileJob, offset int64, data []byte) error {
	return st.publishWaiting(ctx, cp, events.Chunk{File: job.Key, Generation: job.Generation, Offset: offset}, data)
}

func (st *stage) publishWaiting(ctx context.Context, cp *checkpoint, c events.Chunk, data []byte) error {
	msg := c.Msg(data)
	wait, waited := 10*time.Millisecond, time.Duration(0)
	for {
		_, err := st.js.PublishMsg(ctx, msg, jetstream.WithMsgID(c.ID()))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeMaxBytes {
			st.m.windowFull.Inc()
		} else {
			st.log.Warn("chunk publish failed; retrying", "subject", msg.Subject, "err", err)
		}
		if err := retry.Sleep(ctx, wait); err != nil {
			return err
		}
		waited += wait
		wait = min(2*wait, 500*time.Millisecond)
		if waited > st.leaseTTL/3 {
			waited = 0
			if err := cp.Renew(ctx); err != nil {
				return err
			}
		}
	}
}

// finish records what was read in fetch's own record of the file (under the
// plan it was read for: a file planned again meanwhile starts over), then in the
// job, sends the final message and drops the checkpoint. The job is marked fetched
// before the final message goes out, so that upload, which may verify the file at
// once, never sees its state go backwards.
func (st *stage) finish(ctx context.Context, msg jetstream.Msg, cp *checkpoint, job events.FileJob, planned int, log *slog.Logger) {
	again := func(why string, err error) {
		log.Warn(why, "err", err)
		if cp.Save(ctx, func(p *progress) { p.Restart = true }) == nil {
			cp.Release(ctx)
		}
		msg.NakWithDelay(5 * time.Second)
	}
	md, err := digestAt(cp.Get())
	if err != nil {
		again("cannot finish the file; starting it over", err)
		return
	}
	size, sum := cp.Get().Offset, hex.EncodeToString(md.Sum(nil))
	_, err = bus.Update(ctx, st.kv, events.FactsKey(job.Key), func(x *events.FileFacts, exists bool) error {
		if !exists || x.Planned != planned {
			return errReplanned
		}
		if x.Read == planned && x.Generation == job.Generation && x.Size == size && x.MD5 == sum {
			return bus.ErrNoChange
		}
		x.Read, x.Generation, x.Size, x.MD5, x.Updated = planned, job.Generation, size, sum, time.Now().UTC()
		return nil
	})
	switch {
	case errors.Is(err, errReplanned):
		again("Zoom's listing of the file changed while it was read; starting it over", err)
		return
	case err != nil:
		log.Warn("cannot record the fetched file; will retry", "err", err)
		cp.Release(ctx)
		msg.NakWithDelay(5 * time.Second)
		return
	}
	job, err = st.setJob(ctx, job.Key, func(j *events.FileJob) { j.State, j.Size, j.MD5 = events.JobFetched, size, sum })
	if err != nil {
		log.Warn("cannot record the fetched file; will retry", "err", err)
		cp.Release(ctx)
		msg.NakWithDelay(5 * time.Second)
		return
	}
	final := events.Chunk{File: job.Key, Generation: job.Generation, Offset: size, Final: true, Size: size, MD5: sum}
	if err := st.publishWaiting(ctx, cp, final, nil); err != nil {
		cp.Release(context.Background())
		msg.Nak()
		return
	}
	cp.Delete(ctx)
	msg.Ack()
}

// errReplanned: the file was planned again (Zoom listed it otherwise) while it
// was read.
var errReplanned = errors.New("the file was planned again")

// attemptFailed counts a failed attempt: the job waits for its next try, or fails.
func (st *stage) attemptFailed(ctx context.Context, msg jetstream.Msg, cp *checkpoint, job events.FileJob, cause error, log *slog.Logger) {
	giveUp := false
	job, err := st.setJob(ctx, job.Key, func(j *events.FileJob) {
		j.Attempts++
		j.LastError = cause.Error()
		// A file lost from Drive that Zoom no longer has is lost: no attempt
		// brings it back, and the admins hear of it now.
		giveUp = j.Attempts >= st.maxTry || j.Lost && errors.Is(cause, errFileGone)
		if giveUp {
			j.State, j.Unannounced = events.JobFailed, events.FetchFailedID(j.Key, j.Attempts)
		}
		if j.Lost && errors.Is(cause, errFileGone) {
			j.LastError = "deleted from Drive, and Zoom no longer has it: lost (" + cause.Error() + ")"
		}
	})
	if err != nil {
		cp.Release(ctx)
		msg.NakWithDelay(5 * time.Second)
		return
	}
	if errors.Is(cause, errBadLength) || giveUp {
		// What was published cannot be trusted, or nobody will read it: a next try
		// (or a replay) starts over in a new generation.
		cp.Save(ctx, func(p *progress) { p.Restart = true })
	}
	if giveUp {
		if s, err := st.js.Stream(ctx, events.StreamChunks); err == nil {
			s.Purge(ctx, jetstream.WithPurgeSubject(events.ChunkSubject(job.Key)))
		}
	}
	cp.Release(ctx)
	if !giveUp {
		delay := st.delays[min(job.Attempts-1, len(st.delays)-1)]
		log.Warn("attempt failed; will try again", "attempt", job.Attempts, "of", st.maxTry, "retry_in", delay, "err", cause)
		msg.NakWithDelay(delay)
		return
	}
	log.Error("file job failed", "attempts", job.Attempts, "err", cause)
	st.m.failed.Inc()
	if err := bus.AnnounceFailure(ctx, st.js, st.kv, job); err != nil {
		log.Warn("cannot publish the failure; will retry", "err", err)
		msg.NakWithDelay(5 * time.Second) // the redelivery finds it failed, unannounced
		return
	}
	msg.TermWithReason("failed after " + strconv.Itoa(job.Attempts) + " attempts")
}

// resumeAbandoned looks for files whose worker died holding them (a kill, a
// crash: the lease ran out unreleased) and sends each a work message, so that this
// or another worker takes it over as soon as its lease is out instead of when the
// dead worker's message comes back (FETCH_ACK_WAIT). A second message for a file
// is harmless: the lease decides, and the id keeps the workers' scans from
// sending more than one.
func (st *stage) resumeAbandoned(ctx context.Context) {
	keys, err := bus.Abandoned(ctx, st.kv, events.FetchProgressKey(">"))
	if err != nil {
		if ctx.Err() == nil {
			st.log.Warn("cannot look for abandoned files", "err", err)
		}
		return
	}
	for _, name := range keys {
		key := events.FileKeyOf(name)
		job, found, err := bus.Get[events.FileJob](ctx, st.kv, events.FileJobKey(key))
		if err != nil || !found || job.State == events.JobVerified || job.State == events.JobFailed {
			continue
		}
		id := events.ResumeID(key, time.Now().Truncate(st.leaseTTL))
		if _, err := st.js.PublishMsg(ctx, nats.NewMsg(events.FetchJobSubject(key)), jetstream.WithMsgID(id)); err != nil {
			st.log.Warn("cannot send an abandoned file's work message", "file_key", key, "err", err)
			continue
		}
		st.log.Info("a file whose worker died is taken over", "file_key", key, "meeting_uuid", job.Recording.UUID)
	}
}

// setJob changes the file's job record under a revision check.
func (st *stage) setJob(ctx context.Context, key string, change func(*events.FileJob)) (events.FileJob, error) {
	return bus.Update(ctx, st.kv, events.FileJobKey(key), func(j *events.FileJob, exists bool) error {
		if !exists {
			return fmt.Errorf("job %s vanished", key)
		}
		change(j)
		j.Updated = time.Now().UTC()
		return nil
	})
}
