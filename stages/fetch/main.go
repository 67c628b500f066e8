// Command fetch downloads every file of each recorded Zoom meeting into the chunk
// stream, and deals with Zoom's copy once Drive holds all of it.
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
		fmt.Fprintln(os.Stderr, "fetch:", err)
		os.Exit(1)
	}
}
