package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// BenchmarkFetch: fetch, as its own process, moves one file from the Zoom stand-in
// into the chunk stream (64 MiB window, file storage); a consumer in this process
// acknowledges chunks as fast as they come. Reports MB/s and the fetch process's
// peak RSS, for two file sizes: the peak must not grow with the file.
func BenchmarkFetch(b *testing.B) {
	for _, size := range []int64{256 << 20, 1 << 30} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) { benchFetch(b, size) })
	}
}

func benchFetch(b *testing.B, size int64) {
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		w := newWorld(b, map[string]string{"CHUNK_WINDOW": "64MiB", "FETCH_ACK_WAIT": "60s"})
		id := fmt.Sprintf("bench-%d", i)
		rec := w.meeting("uuid-bench", "Bench", standins.FileSpec{ID: id, FileType: "MP4", Extension: "MP4", Size: size})
		done := make(chan struct{})
		cons, err := w.js.CreateOrUpdateConsumer(context.Background(), events.StreamChunks, jetstream.ConsumerConfig{
			Durable: "bench-drain", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000,
		})
		if err != nil {
			b.Fatal(err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			m.Ack()
			if m.Headers().Get(events.HeaderFinal) == "true" {
				close(done)
			}
		}, jetstream.PullMaxBytes(16<<20))
		if err != nil {
			b.Fatal(err)
		}
		p := stagetest.StartProcess(b, "fetch", w.env)
		p.WaitLog(b, "ready")
		b.StartTimer()
		start := time.Now()
		w.send(b, events.EventRecordingCompleted, rec)
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatal("no final message within 5 minutes")
		}
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(size)/1e6/el.Seconds(), "MB/s")
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(p.PeakRSS())/(1<<20), "peak-RSS-MiB")
		p.Kill()
		cc.Stop()
		if served := w.zoom.BytesServed(); served != size {
			b.Fatalf("Zoom served %d bytes", served)
		}
	}
}
