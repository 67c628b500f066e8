package bus

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/events"
)

// HeartbeatEvery is how often a stage says it is alive.
const HeartbeatEvery = 30 * time.Second

// Beat writes the stage's heartbeat (with what fill adds: stats, faults) into the job bucket now,
// every HeartbeatEvery and whenever now says, until ctx ends; notify alerts when
// one stops. It is a plain publish on the key's subject, so the hook, which may
// read nothing, can beat too.
func Beat(ctx context.Context, js jetstream.JetStream, stage string, fill func(*events.Heartbeat), now <-chan struct{}) {
	t := time.NewTicker(HeartbeatEvery)
	defer t.Stop()
	for {
		hb := events.Heartbeat{Stage: stage, At: time.Now().UTC()}
		if fill != nil {
			fill(&hb)
		}
		b, _ := json.Marshal(hb)
		js.Publish(ctx, events.JobSubject(events.HeartbeatKey(stage)), b)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-now:
		}
	}
}
