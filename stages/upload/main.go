// Command upload streams each file from the chunk stream into Google Drive, files
// and tags it, and proves Drive holds exactly the bytes Zoom sent.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // meeting time zones, also in an image without a zoneinfo folder

	// CA roots inside the binary: the images are FROM scratch, with no /etc/ssl.
	_ "golang.org/x/crypto/x509roots/fallback"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "upload:", err)
		os.Exit(1)
	}
}
