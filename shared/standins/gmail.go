package standins

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
)

// Gmail is a stand-in of users.messages.send (../shared/reference/google.md §5): it
// takes {"raw": base64url RFC 5322}, padded or not, checks the token was granted
// gmail.send for the sending user (domain-wide delegation; without a subject it
// answers 400 failedPrecondition, as Gmail does for a bare service account), parses
// the message and keeps it, and answers {id, threadId, labelIds}.
type Gmail struct {
	Server *httptest.Server
	Token  *GoogleToken

	mu     sync.Mutex
	sent   []Mail
	faults []*DriveFault // Kind "send"; Status and Reason as for Drive
}

// Mail is a message as the stand-in parsed it.
type Mail struct {
	Raw     []byte
	Header  mail.Header
	Subject string // decoded
	Text    string // the text/plain part, decoded
	HTML    string // the text/html part, decoded
	User    string // the userId of the request
}

// NewGmail starts the stand-in; tokens are checked against tok.
func NewGmail(tok *GoogleToken) *Gmail {
	g := &Gmail{Token: tok}
	g.Server = newServer(http.HandlerFunc(g.serve))
	return g
}

// URL is GMAIL_API_URL for the stand-in.
func (g *Gmail) URL() string { return g.Server.URL + "/" }

// Close stops the stand-in.
func (g *Gmail) Close() { g.Server.Close() }

// Inject queues a fault for the next sends.
func (g *Gmail) Inject(f DriveFault) {
	if f.Times == 0 {
		f.Times = 1
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.faults = append(g.faults, &f)
}

// Sent are the messages taken so far.
func (g *Gmail) Sent() []Mail {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Mail(nil), g.sent...)
}

func (g *Gmail) serve(w http.ResponseWriter, r *http.Request) {
	user, ok := strings.CutPrefix(r.URL.Path, "/gmail/v1/users/")
	user, ok2 := strings.CutSuffix(user, "/messages/send")
	if !ok || !ok2 || r.Method != http.MethodPost {
		driveError(w, 404, "notFound", "Not Found")
		return
	}
	grant, ok := g.Token.Grant(r)
	switch {
	case !ok:
		driveError(w, 401, "authError", "Invalid Credentials")
		return
	case !contains(grant.Scopes, "https://www.googleapis.com/auth/gmail.send"):
		scopeInsufficient(w, "gmail.googleapis.com")
		return
	case grant.Subject == "":
		driveError(w, 400, "failedPrecondition", "Precondition check failed.")
		return
	case user != "me" && user != grant.Subject:
		driveError(w, 403, "forbidden", "Delegation denied for "+grant.Subject)
		return
	}
	g.mu.Lock()
	var fault *DriveFault
	if len(g.faults) > 0 {
		fault = g.faults[0]
		if fault.Times--; fault.Times <= 0 {
			g.faults = g.faults[1:]
		}
	}
	g.mu.Unlock()
	if fault != nil {
		driveError(w, fault.Status, fault.Reason, fault.Message)
		return
	}
	var body struct{ Raw string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Raw == "" {
		driveError(w, 400, "invalidArgument", "'raw' RFC822 payload message string or uploading message via /upload/* URL required")
		return
	}
	raw, err := base64.URLEncoding.DecodeString(body.Raw)
	if err != nil {
		raw, err = base64.RawURLEncoding.DecodeString(body.Raw)
	}
	if err != nil {
		driveError(w, 400, "invalidArgument", "Invalid value for ByteString")
		return
	}
	m, err := ParseMail(raw)
	if err != nil {
		driveError(w, 400, "invalidArgument", "Invalid RFC 5322 message: "+err.Error())
		return
	}
	m.User = grant.Subject
	g.mu.Lock()
	g.sent = append(g.sent, m)
	id := fmt.Sprintf("18f%013x", len(g.sent))
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	json.NewEncoder(w).Encode(map[string]any{"id": id, "threadId": id, "labelIds": []string{"SENT"}})
}

// ParseMail reads an RFC 5322 message with a multipart/alternative body of text and
// HTML parts, as a mail client would.
func ParseMail(raw []byte) (Mail, error) {
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		return Mail{}, err
	}
	m := Mail{Raw: raw, Header: msg.Header}
	dec := new(mime.WordDecoder)
	if m.Subject, err = dec.DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return m, fmt.Errorf("subject: %w", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return m, fmt.Errorf("content type %q: want multipart/alternative", msg.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return m, err
		}
		var r io.Reader = p
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			r = quotedprintable.NewReader(p)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return m, err
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch pt {
		case "text/plain":
			m.Text = string(b)
		case "text/html":
			m.HTML = string(b)
		}
	}
	return m, nil
}
