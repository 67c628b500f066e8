package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
)

// Drive's resumable upload protocol, spoken by hand: the Go client cannot resume a
// session after a crash because it keeps the session URI to itself. Session URIs
// are credentials of a sort; they go to the job bucket, never to a log.

// fileFields is what every upload and lookup asks Drive to return.
const fileFields = "id,name,size,md5Checksum,webViewLink,parents"

// driveFile is Drive's answer about a file; size comes as a JSON string.
type driveFile struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Size        int64    `json:"size,string"`
	MD5Checksum string   `json:"md5Checksum"`
	WebViewLink string   `json:"webViewLink"`
	Parents     []string `json:"parents"`
}

// driveError is a refusal of Drive's as googleapi reads it: from the resumable
// protocol's answers (googleapi.CheckResponse) and the client library's alike.
// Its methods take a nil driveError (not Drive's refusal) as none of theirs.
type driveError struct{ g *googleapi.Error }

// driveErr is err's refusal by Drive, or nil.
func driveErr(err error) *driveError {
	var g *googleapi.Error
	if errors.As(err, &g) {
		return &driveError{g}
	}
	return nil
}

func (e *driveError) status() int {
	if e == nil {
		return 0
	}
	return e.g.Code
}

// reason is the first of Drive's reasons (storageQuotaExceeded, ...), or "".
func (e *driveError) reason() string {
	if e == nil || len(e.g.Errors) == 0 {
		return ""
	}
	return e.g.Errors[0].Reason
}

// driveAnswer is what an error of a Drive request means for upload.
type driveAnswer int

const (
	driveRetry       driveAnswer = iota // 5xx, 429, 408, a rate limit, a connection's fault: the same request again
	driveDailyCap                       // the 750 GB a day cap: Drive starts no upload until it resets
	driveFull                           // no room in the owner's (or shared drive's) storage: freeing or buying space cures it, nothing else
	driveKeyRefused                     // Google's token endpoint refuses upload's key: nothing goes until it is fixed
	driveSessionGone                    // the resumable session expired or is unknown: a new one may go on
	driveRefused                        // anything else Drive refuses: the same request again will not change its mind
)

// dailyCapMessage tells the daily upload cap from the per-user rate limit, which
// share their reason, userRateLimitExceeded (rclone's reading; Google does not
// document it).
const dailyCapMessage = "User rate limit exceeded."

// classifyDrive is the one table of Drive's answers, for session starts, chunks,
// status queries and metadata calls alike: Drive refuses the cap where a new
// upload starts, and a full Drive or a refused key wherever it likes.
func classifyDrive(err error) driveAnswer {
	de := driveErr(err)
	s, why := de.status(), de.reason()
	switch {
	case errors.Is(err, errSessionGone):
		return driveSessionGone
	case errors.As(err, new(*oauth2.RetrieveError)):
		return driveKeyRefused
	case de == nil, s >= 500, s == http.StatusTooManyRequests, s == http.StatusRequestTimeout,
		s == http.StatusForbidden && why == "rateLimitExceeded":
		return driveRetry
	case s == http.StatusForbidden && why == "userRateLimitExceeded" && de.g.Errors[0].Message == dailyCapMessage:
		return driveDailyCap
	case s == http.StatusForbidden && why == "userRateLimitExceeded":
		return driveRetry
	case s == http.StatusForbidden && why == "storageQuotaExceeded":
		return driveFull
	}
	return driveRefused
}

// notFound: Drive has no such file (or session).
func notFound(err error) bool { return driveErr(err).status() == http.StatusNotFound }

// errSessionGone: the session expired or was never there; start a new one.
var errSessionGone = errors.New("upload session gone (404)")

type resumable struct {
	client *http.Client // authenticated; does not follow redirects (a 308 is an answer)
	base   string       // GOOGLE_API_URL, ending in /
}

// start opens a session for a new file with metadata meta; size is the file's
// length when known, or 0.
func (r *resumable) start(ctx context.Context, meta any, size int64, mimeType string) (string, error) {
	b, _ := json.Marshal(meta)
	u := r.base + "upload/drive/v3/files?uploadType=resumable&supportsAllDrives=true&fields=" + fileFields
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	req.Header.Set("X-Upload-Content-Type", mimeType)
	if size > 0 {
		req.Header.Set("X-Upload-Content-Length", strconv.FormatInt(size, 10))
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("drive session start: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", unexpected(resp)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", errors.New("drive session start: no Location")
	}
	return loc, nil
}

// put sends n bytes of body as the file's bytes from 'from' on (total is the
// file's length, or -1 while unknown); n == 0 asks the session's status. It returns
// how many bytes Drive holds, as its Range says, never as sent, and the file
// once the upload is complete.
func (r *resumable) put(ctx context.Context, session string, from int64, body io.Reader, n, total int64) (int64, *driveFile, error) {
	tot := "*"
	if total >= 0 {
		tot = strconv.FormatInt(total, 10)
	}
	cr := "bytes */" + tot
	if n > 0 {
		cr = fmt.Sprintf("bytes %d-%d/%s", from, from+n-1, tot)
	} else {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, session, body)
	if err != nil {
		return 0, nil, err
	}
	req.ContentLength = n
	req.Header.Set("Content-Range", cr)
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("drive chunk: %w", redact(err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPermanentRedirect:
		// Without Range, Drive holds nothing.
		rg := resp.Header.Get("Range")
		if rg == "" {
			return 0, nil, nil
		}
		_, last, ok := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
		end, err := strconv.ParseInt(last, 10, 64)
		if !ok || err != nil {
			return 0, nil, fmt.Errorf("drive chunk: unreadable Range %q", rg)
		}
		return end + 1, nil, nil
	case http.StatusOK, http.StatusCreated:
		var f driveFile
		if err := json.NewDecoder(resp.Body).Decode(&f); err != nil || f.ID == "" {
			return 0, nil, fmt.Errorf("drive chunk: unreadable file in the final answer")
		}
		return f.Size, &f, nil
	case http.StatusNotFound, http.StatusGone:
		return 0, nil, errSessionGone
	}
	return 0, nil, unexpected(resp)
}

// unexpected reads an answer the protocol does not expect: Drive's error body as
// googleapi reads it, or, for a success of the wrong kind, what it was.
func unexpected(resp *http.Response) error {
	if err := googleapi.CheckResponse(resp); err != nil {
		return err
	}
	return fmt.Errorf("drive answered %s, which the resumable protocol does not use", resp.Status)
}

// redact drops the URL (the session URI) from a client error.
func redact(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("%s: %w", uerr.Op, uerr.Err)
	}
	return err
}
