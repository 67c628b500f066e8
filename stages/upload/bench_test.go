package main

import (
	"fmt"
	"testing"
	"time"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
)

// BenchmarkUpload: upload, as its own process with the default 8 MiB Drive chunks,
// streams one file from the chunk stream (64 MiB window, file storage) into the Drive
// stand-in; this process feeds the chunks as fetch would and runs the stand-in.
// Reports MB/s and the upload process's peak RSS for two sizes, with Go's default
// garbage collection and with a soft memory limit (GOMEMLIMIT).
func BenchmarkUpload(b *testing.B) {
	for _, limit := range []string{"", "40MiB"} {
		for _, size := range []int64{256 << 20, 1 << 30} {
			name := fmt.Sprintf("%dMiB/GOMEMLIMIT=%s", size>>20, limit)
			b.Run(name, func(b *testing.B) { benchUpload(b, size, limit) })
		}
	}
}

func benchUpload(b *testing.B, size int64, memLimit string) {
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		w := newWorld(b, map[string]string{"CHUNK_WINDOW": "64MiB", "DRIVE_CHUNK_SIZE": "8MiB", "UPLOAD_LEASE": "30s", "GOMEMLIMIT": memLimit})
		key := fmt.Sprintf("bench-%d", i)
		w.plan(b, board, spec{key: key, fileType: "MP4", ext: "MP4", size: size})
		p := stagetest.StartProcess(b, "upload", w.env)
		p.WaitLog(b, "ready")
		b.StartTimer()
		start := time.Now()
		go w.feed(b, key, 0, 0, size, true)
		for w.job(b, key).State != events.JobVerified {
			if time.Since(start) > 5*time.Minute {
				b.Fatal("not verified within 5 minutes")
			}
			time.Sleep(5 * time.Millisecond)
		}
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(size)/1e6/el.Seconds(), "MB/s")
		b.ReportMetric(float64(p.PeakRSS())/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(0, "ns/op")
		p.Kill()
	}
}
