// Package standins holds the stand-ins of the outside services zoomarchive talks to,
// speaking their documented protocols (../shared/reference/ beside the repo), for
// tests and the local demo. Nothing here is used in production.
package standins

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ZoomWebhooks delivers events the way Zoom's webhook service does: compact JSON,
// the headers seen on real deliveries, a fresh timestamp and signature on every
// attempt, and the same body and x-zm-request-id on a retry.
type ZoomWebhooks struct {
	URL    string // the endpoint, e.g. http://127.0.0.1:8080/zoom/webhook
	Secret string // the app's secret token
	Client *http.Client
	Now    func() time.Time // when a delivery is signed; time.Now if nil
}

// Delivery is one event as Zoom keeps it across retries.
type Delivery struct {
	Body      []byte
	RequestID string
}

// NewDelivery builds an event body in Zoom's key order (payload, event_ts, event,
// download_token) with a new request id.
func NewDelivery(event string, payload any, downloadToken string) (Delivery, error) {
	body, err := json.Marshal(struct {
		Payload       any    `json:"payload"`
		EventTS       int64  `json:"event_ts"`
		Event         string `json:"event"`
		DownloadToken string `json:"download_token,omitempty"`
	}{payload, time.Now().UnixMilli(), event, downloadToken})
	if err != nil {
		return Delivery{}, err
	}
	return Delivery{Body: body, RequestID: NewZoomRequestID()}, nil
}

// NewZoomRequestID has the shape of x-zm-request-id: 8_4_4_4_12 hex digits.
func NewZoomRequestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "_" + h[8:12] + "_" + h[12:16] + "_" + h[16:20] + "_" + h[20:]
}

// SignZoom is Zoom's x-zm-signature for a body sent at timestamp ts (epoch seconds).
func SignZoom(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:%s", ts, body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// Request is one signed attempt of d, as Zoom would post it now.
func (z *ZoomWebhooks) Request(ctx context.Context, d Delivery) (*http.Request, error) {
	now := time.Now
	if z.Now != nil {
		now = z.Now
	}
	ts := strconv.FormatInt(now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, z.URL, bytes.NewReader(d.Body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Zoom Marketplace/1.0a")
	req.Header.Set("x-zm-request-timestamp", ts)
	req.Header.Set("x-zm-signature", SignZoom(z.Secret, ts, d.Body))
	req.Header.Set("x-zm-request-id", d.RequestID)
	req.Header.Set("x-zm-trackingid", "v=2.0;clid=us02;rid=WEB_"+d.RequestID)
	req.Header.Set("clientid", "standin-client-id")
	return req, nil
}

// Send posts one signed attempt of d and returns the status and body of the answer.
func (z *ZoomWebhooks) Send(ctx context.Context, d Delivery) (int, []byte, error) {
	req, err := z.Request(ctx, d)
	if err != nil {
		return 0, nil, err
	}
	client := z.Client
	if client == nil {
		client = http.DefaultClient
	}
	// Zoom gives up on an attempt after 3 s.
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := client.Do(req.WithContext(cctx))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), err
}
