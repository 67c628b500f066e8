package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
)

// checkCommand proves the deployment as upload sees it, for real: the broker lets
// upload in, and the Drive folder is there and takes a file as the configured
// identity (a small one, deleted at once); and Google refuses the key every scope
// but Drive's (serviceaccount.Confined: warnings, not failures).
func checkCommand(stdout io.Writer) config.Command {
	return config.CheckCommand("upload", "the broker as upload, the Drive folder writable as the configured identity", stdout,
		func(ctx context.Context, v *config.Values, checks *config.Checks) error {
			st, c, err := configure(ctx, v, io.Discard)
			if err != nil {
				return err
			}
			checks.Report("broker: connected as upload, the job bucket readable", bus.Reach(ctx, c.bus, true))
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err = st.checkDrive(dctx, c.subject)
			if err == nil && dctx.Err() != nil {
				err = errors.New("no answer from Drive within 30s")
			}
			if err == nil {
				err = st.probeQuota(dctx)
			}
			checks.Report(fmt.Sprintf("Drive: folder %s writable as %s", st.root, cmp.Or(c.subject, "the service account")), err)
			key, err := os.ReadFile(c.keyFile)
			if err != nil {
				return err
			}
			serviceaccount.ReportConfined(checks, key, events.IdentityUpload, c.subject)
			return nil
		})
}
