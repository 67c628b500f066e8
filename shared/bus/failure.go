package bus

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/events"
)

// AnnounceFailure says on ARCHIVE that job failed when that is still to be said
// (job.Unannounced), then notes it said. A stage that fails a job records the id
// with the failure and calls this; one that finds a failed job calls it too, so
// that a broker error in between leaves nothing unsaid (the id keeps a second mail
// out).
func AnnounceFailure(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, job events.FileJob) error {
	if job.State != events.JobFailed || job.Unannounced == "" {
		return nil
	}
	b, err := json.Marshal(job.Failed())
	if err != nil {
		return err
	}
	if _, err := js.Publish(ctx, events.FileFailedSubject(job.Key), b, jetstream.WithMsgID(job.Unannounced)); err != nil {
		return err
	}
	_, err = Update(ctx, kv, events.FileJobKey(job.Key), func(j *events.FileJob, exists bool) error {
		if !exists || j.Unannounced != job.Unannounced {
			return ErrNoChange
		}
		j.Unannounced = ""
		return nil
	})
	return err
}
