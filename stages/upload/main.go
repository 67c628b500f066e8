// Command upload streams each file from the chunk stream into Google Drive, files
// and tags it, and proves Drive holds exactly the bytes Zoom sent.
//
// The words its code uses, once:
//
//   - generation: one pass of fetch over a file from byte 0. fetch counts up when it
//     starts a file over; upload then drops what it has and opens a new session.
//   - session: Drive's resumable upload of one generation (session.go). Its URI
//     and the offset Drive confirmed are the resume point (upState), saved before
//     their messages are acknowledged.
//   - drop: a session given up and the file started over at byte 0, in one place
//     (dropSession), for one of the reasons listed beside it (dropReason).
//   - kept: chunk messages taken from the stream whose bytes Drive has not yet
//     confirmed (stream.go); nothing is acknowledged before Drive has it. (upload
//     keeps messages; "hold" is fetch's word, for the wait before a recording
//     leaves Zoom.)
//   - reused: a file's consumer an earlier worker made, taken on when none of its
//     messages are pending (stream.go).
//   - verified: Drive's size and md5Checksum equal what fetch read from Zoom (the
//     final message); upload does not hash the bytes itself.
//   - gap: a chunk that starts past the bytes in hand.
//   - reread: the file's consumer is replaced so that the stream hands out again
//     what an earlier one withheld (errReread); Zoom is not asked. A gap is first a
//     reread; on the consumer made for it, a gap means the bytes are gone.
//   - refetch: fetch is asked for the file again from byte 0, a new generation
//     (errRefetch, announce.go): the bytes are gone from the stream, Drive lost
//     confirmed ones, or the copy did not verify.
//   - idle: no chunk for UPLOAD_IDLE; the worker's place goes to another file.
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
