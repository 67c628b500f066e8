// Command broker runs zoomarchive's embedded NATS server (see package broker).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	// CA roots inside the binary: the images are FROM scratch, with no /etc/ssl.
	_ "golang.org/x/crypto/x509roots/fallback"

	broker "zoomarchive/nats"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := broker.Run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}
