package main

import (
	"context"
	"io"
	"os"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/serviceaccount"
)

// checkCommand proves the deployment as notify sees it: the broker lets notify in,
// and Google gives the service account a token to send mail as GMAIL_SENDER
// (gmail.send allows no cheaper call that sends nothing; the token is granted only
// for a user of the domain with the delegation in place); and Google refuses the
// key every other scope as GMAIL_SENDER (serviceaccount.Confined: warnings, not
// failures).
func checkCommand(stdout io.Writer) config.Command {
	return config.CheckCommand("notify", "the broker as notify, Gmail send allowed for GMAIL_SENDER", stdout,
		func(ctx context.Context, v *config.Values, checks *config.Checks) error {
			st, c, err := configure(ctx, v, io.Discard)
			if err != nil {
				return err
			}
			checks.Report("broker: connected as notify, the job bucket readable", bus.Reach(ctx, c.bus, true))
			checks.Report("Gmail: a token to send as "+st.sender, gmailToken(st.tokens))
			key, err := os.ReadFile(st.keyFile)
			if err != nil {
				return err
			}
			serviceaccount.ReportConfined(checks, key, events.IdentityNotify, st.sender)
			return nil
		})
}
