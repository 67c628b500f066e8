package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
)

// The service account's key replaced in its file in the middle of a file, as a
// rotation does: a file that holds no key leaves the key in use; the new key is
// taken once Google gives a token for it; the old key is then deleted at Google,
// and the file goes on in its Drive session to the last byte.
func TestGoogleKeyReplacedMidFile(t *testing.T) {
	w := newWorld(t, nil)
	w.token.TokenTTL = 3 * time.Second // every request asks for a token: the deleted key would show
	keyFile := w.env["GOOGLE_APPLICATION_CREDENTIALS"]
	const size = 8*mib + 5
	w.plan(t, board, spec{key: "rekey", fileType: "MP4", ext: "MP4", size: size})
	s := w.startUpload(t)
	w.feed(t, "rekey", 0, 0, 3*mib, false)
	w.waitConfirmed(t, "rekey", 2*mib)
	stagetest.Rewrite(t, keyFile, `{"type":"service_account"}`)
	s.WaitLog(t, "GOOGLE_APPLICATION_CREDENTIALS cannot be used; the key in use stays")
	w.waitKeyReported(t, "standin-key-1", true) // for notify's alert
	id, newKey := w.token.NewKey()
	stagetest.Rewrite(t, keyFile, string(newKey))
	s.WaitLog(t, "the new Google key is in use")
	w.waitKeyReported(t, id, false)
	w.token.DeleteKey("standin-key-1")
	w.feed(t, "rekey", 0, 3*mib, size, true)
	w.waitVerified(t, "rekey")
	w.checkCopy(t, "rekey")
	if n := w.drive.Sessions(); n != 1 {
		t.Errorf("%d Drive sessions; the file must go on in its first", n)
	}
}

// waitKeyReported waits until upload's heartbeat names key id in use, with a
// problem in its file or none.
func (w *world) waitKeyReported(t *testing.T, id string, problem bool) {
	t.Helper()
	stagetest.Eventually(t, "the heartbeat naming key "+id, 10*time.Second, 100*time.Millisecond, func() error {
		hb, _, err := bus.Get[events.Heartbeat](context.Background(), w.kv, events.HeartbeatKey(events.IdentityUpload))
		c := hb.Credentials[events.CredentialGoogleKey]
		if err == nil && (c.ID != id || (c.Problem != "") != problem) {
			err = fmt.Errorf("heartbeat says %+v", c)
		}
		return err
	})
}
