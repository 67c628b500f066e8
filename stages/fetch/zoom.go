package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"zoomarchive/shared/events"
	"zoomarchive/shared/retry"
)

// Zoom's APIs as fetch uses them: Server-to-Server OAuth with a cached token, the
// meeting recordings endpoints, and downloads that redirect to a CDN. Every request
// waits for the stage-wide pacer, so one 429 slows them all.

// zoomError is Zoom's error body, {"code":…,"message":…}, with the HTTP status and
// what the answer means (classify).
type zoomError struct {
	Status  int
	Code    int    `json:"code"`
	Message string `json:"message"`
	answer  answer
}

func (e *zoomError) Error() string {
	return fmt.Sprintf("zoom answered %d (code %d): %s", e.Status, e.Code, e.Message)
}

// Zoom's error codes fetch decides on, with what Zoom documents for each
// (docs/api/errors; the reference's §3 and §5).
const (
	// codeInvalidToken: "Invalid access token." An expired or revoked token, or
	// one sent in the query string (refused since February 2023).
	codeInvalidToken = 124
	// codeNoRecording: 404 "There is no recording for this meeting." Trashed or
	// deleted, and, with another message, still processing.
	codeNoRecording = 3301
	// codeNoPermission: "Invalid access token, does not contain permissions."
	codeNoPermission = 4700
	// codeNoScope: "Invalid access token, does not contain scopes": a scope the
	// app was not granted.
	codeNoScope = 4711
)

// rateLimitDaily is X-RateLimit-Type on a 429 of a daily limit (QPS on one of the
// per-second limit); Zoom's messages differ too, but a decision reads the header.
const rateLimitDaily = "Daily-limit"

// answer is what one of Zoom's answers means for fetch; classify decides it for
// API calls, token requests and downloads alike.
type answer int

const (
	answerOK        answer = iota
	answerRefused          // Zoom refuses the app: its token, permissions or scopes
	answerGone             // no such recording (404 3301) or file (a download's 404)
	answerPerSecond        // 429 of a per-second limit: every request backs off until Retry-After
	answerDaily            // 429 of a daily limit: every request waits for Zoom's reset; one alert
	answerTransient        // 5xx: a retry may get past it
	answerOther            // anything else: final for this request
)

// classify is the one table of Zoom's answers. code is Zoom's error code, 0 when
// the answer had none (a download host's page).
func classify(status int, h http.Header, code int) answer {
	switch {
	case status < 400:
		return answerOK
	case status == http.StatusTooManyRequests && strings.EqualFold(h.Get("X-RateLimit-Type"), rateLimitDaily):
		return answerDaily
	case status == http.StatusTooManyRequests:
		return answerPerSecond
	case status >= 500:
		return answerTransient
	case code == codeInvalidToken || code == codeNoPermission || code == codeNoScope,
		status == http.StatusUnauthorized,
		status == http.StatusForbidden && code == 0: // a download host's refusal
		return answerRefused
	case status == http.StatusNotFound && (code == codeNoRecording || code == 0):
		return answerGone
	}
	return answerOther
}

// hostRefused: a URL (or a redirect) off ZOOM_DOWNLOAD_HOSTS, or not https; no
// retry can help.
type hostRefused struct{ msg string }

func (e hostRefused) Error() string { return e.msg }

// credentialsRefused: Zoom's token endpoint refused the app (a wrong secret, a
// deactivated app, another account); no retry cures it.
type credentialsRefused struct{ msg string }

func (e credentialsRefused) Error() string { return e.msg }

// refusal tells the errors that mean Zoom refuses the app itself: its credentials,
// or its token where a new one does not help (401 after a renewal, a missing
// permission or scope), as against one recording or a passing fault.
func refusal(err error) bool {
	var zerr *zoomError
	return errors.As(err, new(credentialsRefused)) || errors.As(err, &zerr) && zerr.answer == answerRefused
}

var (
	// errGone: Zoom no longer has the recording (404, code 3301).
	errGone = errors.New("zoom has no such recording (404, code 3301)")
	// errDailyLimit: a daily rate limit of Zoom's is reached; every request waits
	// for its reset.
	errDailyLimit = errors.New("zoom's daily rate limit is reached")
)

type zoomClient struct {
	apiURL    string
	hosts     hostList
	client    *http.Client
	pace      *pacer
	retryBase time.Duration

	mu     sync.Mutex
	cc     clientcredentials.Config // S2S: the account id and grant type as parameters, id and secret as Basic auth
	token  *oauth2.Token            // the one in use, until tokenReuse before it expires
	scopes []string                 // what the app was granted, as the token answer lists them

	tokenRequests prometheus.Counter
	rateLimited   prometheus.Counter

	// refused and accepted hear of every answer that refuses the app and of every
	// one that takes it; dailyLimit of a daily limit that closed the pacer until
	// its reset (nil until the stage sets them).
	refused    func(error)
	accepted   func()
	dailyLimit func(until time.Time)
}

// hostList is ZOOM_DOWNLOAD_HOSTS: exact names and *.suffix patterns. Credentials
// go to these hosts only, and fetch requests nothing outside them.
type hostList []string

func (h hostList) allows(u *url.URL) error {
	host := strings.ToLower(u.Hostname())
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(host)) {
		return hostRefused{fmt.Sprintf("refused %s URL: only https (plain http on loopback, for stand-ins)", u.Scheme)}
	}
	for _, p := range h {
		p = strings.ToLower(p)
		if host == p || strings.HasPrefix(p, "*.") && strings.HasSuffix(host, p[1:]) {
			return nil
		}
	}
	return hostRefused{fmt.Sprintf("refused host %q: not in ZOOM_DOWNLOAD_HOSTS", host)}
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

func newZoomClient(apiURL, oauthURL, accountID, clientID, clientSecret string, hosts hostList, retryBase time.Duration, reg prometheus.Registerer) *zoomClient {
	c := &zoomClient{
		apiURL: strings.TrimSuffix(apiURL, "/"), hosts: hosts, pace: &pacer{}, retryBase: retryBase,
		tokenRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zoomarchive_fetch_token_requests_total", Help: "Server-to-Server OAuth token requests.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zoomarchive_fetch_rate_limited_total", Help: "429 answers from Zoom; each pauses every request of the stage.",
		}),
	}
	reg.MustRegister(c.tokenRequests, c.rateLimited)
	c.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
		},
		// Zoom's download URL redirects to its CDN: follow, but never off the list.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("more than 5 redirects")
			}
			return hosts.allows(req.URL)
		},
	}
	c.cc = clientcredentials.Config{
		ClientID: clientID, ClientSecret: clientSecret, TokenURL: oauthURL, AuthStyle: oauth2.AuthStyleInHeader,
		EndpointParams: url.Values{"grant_type": {"account_credentials"}, "account_id": {accountID}},
	}
	return c
}

// tokenReuse keeps a token until five minutes before it expires.
const tokenReuse = 5 * time.Minute

// accessToken is the S2S token, a new one asked for (paced and counted like every
// request to Zoom) when less than five minutes remain.
func (c *zoomClient) accessToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.token; t != nil && (t.Expiry.IsZero() || time.Until(t.Expiry) > tokenReuse) {
		return t.AccessToken, nil
	}
	if err := c.pace.wait(ctx); err != nil {
		return "", err
	}
	c.tokenRequests.Inc()
	t, err := c.cc.Token(context.WithValue(ctx, oauth2.HTTPClient, c.client))
	if err != nil {
		return "", c.tokenError(err)
	}
	if scope, ok := t.Extra("scope").(string); ok {
		c.scopes = strings.Fields(scope)
	}
	c.token = t
	return t.AccessToken, nil
}

// tokenError says why Zoom gave no token; a refusal of the app's credentials
// (a 4xx other than a rate limit) is a credentialsRefused.
func (c *zoomClient) tokenError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return fmt.Errorf("zoom token: %w", err)
	}
	status := re.Response.StatusCode
	a := c.heard(status, re.Response.Header, 0) // OAuth errors are {reason, error}: no code
	var e struct {
		Reason string `json:"reason"`
	}
	json.Unmarshal(re.Body, &e) // Zoom's words, when it gave any
	err = fmt.Errorf("zoom token: %d %s: %s", status, re.ErrorCode, e.Reason)
	switch {
	case a == answerDaily:
		err = fmt.Errorf("%w: %w", errDailyLimit, err)
	case status < 500 && a != answerPerSecond:
		err = c.hearRefusal(credentialsRefused{err.Error() + " (check ZOOM_ACCOUNT_ID, ZOOM_CLIENT_ID, ZOOM_CLIENT_SECRET, and that the app is activated)"})
	}
	return err
}

// useSecret makes the next token be asked with secret (the token in hand is
// dropped) and returns the secret it replaces.
func (c *zoomClient) useSecret(secret string) (old string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, c.cc.ClientSecret = c.cc.ClientSecret, secret
	c.token = nil
	return old
}

// invalidate drops tok after Zoom refused it, so the next call asks for a new one.
func (c *zoomClient) invalidate(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token != nil && c.token.AccessToken == tok {
		c.token = nil
	}
}

// meetingPath is /meetings/{uuid}: a UUID that starts with '/' or holds '//' is
// encoded twice, as Zoom requires.
func meetingPath(uuid string) string {
	seg := url.PathEscape(uuid)
	if strings.HasPrefix(uuid, "/") || strings.Contains(uuid, "//") {
		seg = url.PathEscape(seg)
	}
	return "/meetings/" + seg
}

// maxTries caps the tries of one API request through 5xx, network errors and
// per-second rate limits; then the caller's own retry (a redelivery) takes over.
const maxTries = 6

// call makes one API request: a refused token is renewed once, a per-second 429
// waits for the pacer, 5xx and network errors are retried with backoff, all within
// maxTries; a daily limit returns at once (the pacer waits for its reset). out
// receives the JSON.
func (c *zoomClient) call(ctx context.Context, method, path string, query url.Values, body, out any) error {
	u := c.apiURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	renewed := false
	for try := 1; ; try++ {
		tok, err := c.accessToken(ctx)
		if err != nil {
			return err
		}
		var in io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			in = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, in)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if err := c.pace.wait(ctx); err != nil {
			return err
		}
		resp, err := c.client.Do(req)
		if err != nil {
			if try < maxTries && ctx.Err() == nil {
				retry.Sleep(ctx, retry.Backoff(c.retryBase, try-1))
				continue
			}
			return fmt.Errorf("zoom %s %s: %w", method, path, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		zerr := &zoomError{Status: resp.StatusCode}
		json.Unmarshal(body, zerr) // Zoom's {"code","message"}, when it sent one
		zerr.answer = c.heard(resp.StatusCode, resp.Header, zerr.Code)
		switch zerr.answer {
		case answerOK:
			if out != nil && len(body) > 0 {
				return json.Unmarshal(body, out)
			}
			return nil
		case answerRefused:
			if resp.StatusCode == http.StatusUnauthorized && !renewed {
				c.invalidate(tok)
				renewed = true
				continue
			}
		case answerPerSecond:
			if try < maxTries {
				continue
			}
		case answerTransient:
			if try < maxTries {
				retry.Sleep(ctx, retry.Backoff(c.retryBase, try-1))
				continue
			}
		case answerGone:
			return fmt.Errorf("zoom %s %s: %w", method, path, errGone)
		case answerDaily:
			return fmt.Errorf("zoom %s %s: %w until %s: %w", method, path, errDailyLimit, c.pace.Until().UTC().Format(time.RFC3339), zerr)
		}
		return c.hearRefusal(fmt.Errorf("zoom %s %s: %w", method, path, zerr))
	}
}

// heard is where every answer of Zoom's goes (API calls, token requests,
// downloads): it classifies it and does what the whole stage must do about it. A
// rate limit closes the pacer (per second until Retry-After, daily until Zoom's
// reset, telling the stage once); a success tells the stage that Zoom takes the app.
func (c *zoomClient) heard(status int, h http.Header, code int) answer {
	a := classify(status, h, code)
	switch a {
	case answerOK:
		if c.accepted != nil {
			c.accepted()
		}
	case answerPerSecond:
		c.rateLimited.Inc()
		c.pace.Close(retryAfter(h, time.Now(), time.Now().Add(time.Second)))
	case answerDaily:
		c.rateLimited.Inc()
		now := time.Now()
		until := retryAfter(h, now, nextUTCMidnight(now))
		if c.pace.Close(until) && c.dailyLimit != nil {
			c.dailyLimit(until)
		}
	}
	return a
}

// hearRefusal tells the stage of err when it is a refusal, and returns it.
func (c *zoomClient) hearRefusal(err error) error {
	if refusal(err) && c.refused != nil {
		c.refused(err)
	}
	return err
}

// recording asks Zoom for a recording's current files, and with dlToken a fresh
// download_access_token.
func (c *zoomClient) recording(ctx context.Context, uuid string, dlToken bool) (events.Recording, string, error) {
	var q url.Values
	if dlToken {
		q = url.Values{"include_fields": {"download_access_token"}}
	}
	var raw json.RawMessage
	if err := c.call(ctx, http.MethodGet, meetingPath(uuid)+"/recordings", q, nil, &raw); err != nil {
		return events.Recording{}, "", err
	}
	var rec events.Recording
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, "", fmt.Errorf("zoom recording %s: %w", uuid, err)
	}
	var token string
	json.Unmarshal(rec.Extra["download_access_token"], &token)
	delete(rec.Extra, "download_access_token")
	return rec, token, nil
}

// trashed finds a recording in its host's trash (which the meeting's own
// endpoint does not read), or errGone.
func (c *zoomClient) trashed(ctx context.Context, hostID, uuid string) (events.Recording, error) {
	var found *events.Recording
	q := url.Values{"trash": {"true"}, "trash_type": {"meeting_recordings"}}
	err := c.eachRecording(ctx, listing{pageSize: 300}, zoomUser{ID: hostID, Email: hostID}, q, func(rec events.Recording) error {
		if rec.UUID == uuid {
			found = &rec
			return errFound
		}
		return nil
	})
	switch {
	case found != nil:
		return *found, nil
	case err == nil:
		return events.Recording{}, errGone
	}
	return events.Recording{}, err
}

var errFound = errors.New("found")

// transcribes tells whether the host has cloud audio transcription on (the user's
// recording settings, which follow the account's when it locks them): then Zoom
// makes the transcript after the recording, and sends an event of its own.
func (c *zoomClient) transcribes(ctx context.Context, hostID string) (bool, error) {
	var s struct {
		Recording struct {
			AudioTranscript bool `json:"recording_audio_transcript"`
		} `json:"recording"`
	}
	err := c.call(ctx, http.MethodGet, "/users/"+url.PathEscape(hostID)+"/settings", nil, nil, &s)
	return s.Recording.AudioTranscript, err
}

// removeRecording trashes or deletes every file of a recording. A 404 3301 is
// errGone, which the caller takes as done when it had asked before.
func (c *zoomClient) removeRecording(ctx context.Context, uuid, action string) error {
	return c.call(ctx, http.MethodDelete, meetingPath(uuid)+"/recordings", url.Values{"action": {action}}, nil, nil)
}

// recover takes a trashed recording out of Zoom's trash (within its 30 days).
func (c *zoomClient) recover(ctx context.Context, uuid string) error {
	return c.call(ctx, http.MethodPut, meetingPath(uuid)+"/recordings/status", nil, map[string]string{"action": "recover"}, nil)
}

// download opens a file's bytes from offset on, with what Zoom's answer means.
// bearer is the S2S token or a download_access_token; the URL and every redirect
// must be on the allowed hosts.
func (c *zoomClient) download(ctx context.Context, rawURL string, offset int64, bearer string) (*http.Response, answer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, 0, fmt.Errorf("download URL unreadable")
	}
	if err := c.hosts.allows(u); err != nil {
		return nil, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	if err := c.pace.wait(ctx); err != nil {
		return nil, 0, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		var refused hostRefused
		if errors.As(err, &refused) {
			return nil, 0, refused // a redirect off the allowed hosts; no URL in the message
		}
		return nil, 0, fmt.Errorf("download: %w", redact(err))
	}
	return resp, c.heard(resp.StatusCode, resp.Header, 0), nil // a download host's errors are pages, not codes
}

// redact keeps signed URLs out of errors, which end up in logs and job state.
func redact(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("%s: %w", uerr.Op, uerr.Err)
	}
	return err
}

// pacer holds every Zoom request of the stage back while a rate limit lasts.
type pacer struct{ retry.Gate }

func (p *pacer) wait(ctx context.Context) error { return p.Wait(ctx) }

// retryAfter is when a 429 says to try again: Retry-After as Zoom sends it (an ISO
// date-time), or as an HTTP date or seconds, else X-RateLimit-Reset (a date-time or
// Unix seconds; Zoom's documents disagree); a time not after now gives fallback.
func retryAfter(h http.Header, now, fallback time.Time) time.Time {
	at := func(v string, secondsFromNow bool) time.Time {
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t
		}
		if t, err := http.ParseTime(v); err == nil {
			return t
		}
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
			if secondsFromNow {
				return now.Add(time.Duration(s) * time.Second)
			}
			return time.Unix(s, 0)
		}
		return time.Time{}
	}
	for _, t := range []time.Time{at(h.Get("Retry-After"), true), at(h.Get("X-RateLimit-Reset"), false)} {
		if t.After(now) {
			return t
		}
	}
	return fallback
}

// nextUTCMidnight is when Zoom's daily limits start over, when it does not say.
func nextUTCMidnight(now time.Time) time.Time {
	return now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
}

// Listing: users and their recordings, page by page.

// listing is how Zoom's lists are read: pages of pageSize, one request every
// every, so that live webhooks keep within Zoom's rate limits.
type listing struct {
	pageSize int
	every    time.Duration
}

// zoomUser is a user as Zoom lists them.
type zoomUser struct {
	ID     string `json:"id"`
	Email  string `json:"email"`
	Status string `json:"status"`
}

// users lists the account's active and inactive users, or the one only names (an
// id or an email address).
func (c *zoomClient) users(ctx context.Context, l listing, only string) ([]zoomUser, error) {
	var all []zoomUser
	for _, status := range []string{"active", "inactive"} {
		token := ""
		for {
			var page struct {
				NextPageToken string     `json:"next_page_token"`
				Users         []zoomUser `json:"users"`
			}
			q := url.Values{"status": {status}, "page_size": {"300"}}
			if token != "" {
				q.Set("next_page_token", token)
			}
			if err := c.list(ctx, l, "/users", q, &page); err != nil {
				return nil, fmt.Errorf("listing users: %w", err)
			}
			for _, u := range page.Users {
				if only == "" || strings.EqualFold(only, u.Email) || only == u.ID {
					all = append(all, u)
				}
			}
			if token = page.NextPageToken; token == "" {
				break
			}
		}
	}
	if only != "" && len(all) == 0 {
		return nil, fmt.Errorf("--user %s: no such user in the account", only)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Email < all[j].Email })
	return all, nil
}

// eachRecording pages through one user's recordings listed with query q (a window,
// or the trash) and hands each to fn.
func (c *zoomClient) eachRecording(ctx context.Context, l listing, u zoomUser, q url.Values, fn func(events.Recording) error) error {
	token := ""
	q.Set("page_size", strconv.Itoa(l.pageSize))
	for {
		var page struct {
			NextPageToken string             `json:"next_page_token"`
			Meetings      []events.Recording `json:"meetings"`
		}
		if token != "" {
			q.Set("next_page_token", token)
		}
		if err := c.list(ctx, l, "/users/"+url.PathEscape(u.ID)+"/recordings", q, &page); err != nil {
			return fmt.Errorf("listing %s's recordings (%s): %w", u.Email, q.Encode(), err)
		}
		for _, rec := range page.Meetings {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if token = page.NextPageToken; token == "" {
			return nil
		}
	}
}

// list is one list request, paced so that live webhooks keep Zoom's limits.
func (c *zoomClient) list(ctx context.Context, l listing, path string, q url.Values, out any) error {
	if err := retry.Sleep(ctx, l.every); err != nil {
		return err
	}
	return c.call(ctx, http.MethodGet, path, q, nil, out)
}

// monthWindows cuts [from, to] into pieces of at most a month, the longest span
// Zoom lists recordings for.
func monthWindows(from, to time.Time) [][2]time.Time {
	var out [][2]time.Time
	for w := from; !w.After(to); {
		end := w.AddDate(0, 1, -1)
		if end.After(to) {
			end = to
		}
		out = append(out, [2]time.Time{w, end})
		w = end.AddDate(0, 0, 1)
	}
	return out
}

// storage asks Zoom's cloud recording usage report for the last days: the account's
// storage on the last day, and its change from the day before. Without the scope
// it asks nothing (a 403 would count as Zoom refusing the app) and says what to add.
func (c *zoomClient) storage(ctx context.Context, now time.Time) events.ZoomStorage {
	if err := c.missingScopes([]zoomScope{scopeStorage}); err != nil {
		return events.ZoomStorage{NotKnown: "add the scope " + scopeStorage.granular + " to the Zoom app (Marketplace, Scopes)"}
	}
	var report struct {
		Days []struct {
			Date  string `json:"date"`
			Usage string `json:"usage"`
			Plan  string `json:"plan_usage"`
		} `json:"cloud_recording_storage"`
	}
	q := url.Values{"from": {now.AddDate(0, 0, -7).Format("2006-01-02")}, "to": {now.Format("2006-01-02")}}
	if err := c.call(ctx, http.MethodGet, "/report/cloud_recording", q, nil, &report); err != nil {
		return events.ZoomStorage{NotKnown: "Zoom did not answer the usage report: " + redact(err).Error()}
	}
	days := report.Days
	sort.Slice(days, func(a, b int) bool { return days[a].Date < days[b].Date })
	if len(days) == 0 {
		return events.ZoomStorage{NotKnown: "Zoom's usage report has no day in the last week"}
	}
	last := days[len(days)-1]
	s := events.ZoomStorage{Date: last.Date, Used: last.Usage, Plan: last.Plan, Percent: -1}
	used, okUsed := zoomSize(last.Usage)
	if plan, ok := zoomSize(last.Plan); ok && okUsed && plan > 0 {
		s.Percent = float64(used) * 100 / float64(plan)
	}
	if len(days) > 1 {
		if before, ok := zoomSize(days[len(days)-2].Usage); ok && okUsed {
			s.Change, s.ChangeKnown = used-before, true
		}
	}
	return s
}

// zoomSize reads a size as Zoom's reports write it: "412.5 GB", "1 TB", "0 MB".
func zoomSize(s string) (int64, bool) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), " ")
	f, err := strconv.ParseFloat(num, 64)
	mult := map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[strings.ToUpper(strings.TrimSpace(unit))]
	if err != nil || f < 0 || mult == 0 {
		return 0, false
	}
	return int64(f * mult), true
}
