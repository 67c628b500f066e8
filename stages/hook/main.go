// Command hook is zoomarchive's webhook endpoint: it verifies Zoom's deliveries,
// answers URL validation, and stores every genuine event once in ZOOM_EVENTS.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	// CA roots inside the binary: the images are FROM scratch, with no /etc/ssl.
	_ "golang.org/x/crypto/x509roots/fallback"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hook:", err)
		os.Exit(1)
	}
}
