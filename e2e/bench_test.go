package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2/google"
	"google.golang.org/api/drive/v3"

	"zoomarchive/shared/events"
	"zoomarchive/shared/stagetest"
	"zoomarchive/shared/standins"
)

// Benchmarks of the whole pipeline, every program its own process, against a direct
// single-process copy from the Zoom stand-in to the Drive stand-in with the same
// 8 MiB Drive chunks, measured in the same run (make bench).

// BenchmarkPipeline: MB/s of the pipeline and of the direct copy, at a droplet's
// link speed (Zoom serving 50 MB/s) and unthrottled; peak RSS of each stage and peak
// bytes in the chunk stream.
func BenchmarkPipeline(b *testing.B) {
	for _, c := range []struct {
		name string
		rate int64
		size int64
	}{{"50MBps-512MiB", 50e6, 512 << 20}, {"loopback-1GiB", 0, 1 << 30}, {"loopback-200MiB", 0, 200 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				direct := directCopy(b, c.rate, c.size)
				p := newPipeline(b, map[string]string{"DRIVE_CHUNK_SIZE": "8MiB", "CHUNK_WINDOW": "64MiB"})
				p.zoom.SetRate(c.rate)
				rec := p.recording(0, c.size)
				peak := p.watchWindow()
				start := time.Now()
				p.deliver(rec, 1)
				stagetest.WaitFor(b, "verified", 10*time.Minute, func() bool { return p.jobState(rec) == events.JobVerified })
				el := time.Since(start)
				b.ReportMetric(float64(c.size)/1e6/el.Seconds(), "pipeline-MB/s")
				b.ReportMetric(direct, "direct-MB/s")
				b.ReportMetric(float64(c.size)/1e6/el.Seconds()/direct, "ratio")
				b.ReportMetric(float64(peak())/(1<<20), "peak-window-MiB")
				for _, s := range []string{"fetch", "upload", "hook", "notify"} {
					b.ReportMetric(float64(p.procs[s].PeakRSS())/(1<<20), s+"-peak-MiB")
				}
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}

// BenchmarkCPUPerGiB: a 2 GiB file, unthrottled. Each program's CPU seconds per GiB
// archived from its own accounting (/proc/<pid>/stat), and their sum; beside them a
// direct copy between the same stand-ins in this process (its CPU, the stand-ins'
// included: their share shows as standins-cpu-s/GiB during the pipeline), the
// throughputs and their ratio, and each program's peak resident memory.
func BenchmarkCPUPerGiB(b *testing.B) {
	const size = 2 << 30
	gib := float64(size) / (1 << 30)
	for range b.N {
		c0 := selfCPU(b)
		direct := directCopy(b, 0, size)
		b.ReportMetric((selfCPU(b)-c0).Seconds()/gib, "direct-cpu-s/GiB")
		p := newPipeline(b, stagetest.Merge(map[string]string{"DRIVE_CHUNK_SIZE": "8MiB", "CHUNK_WINDOW": "64MiB"}, benchEnv()))
		rec := p.recording(0, size)
		procs := map[string]*stagetest.Process{"broker": p.brokers[0]}
		for _, s := range []string{"hook", "fetch", "upload", "notify"} {
			procs[s] = p.procs[s]
		}
		before := map[string]time.Duration{}
		for name, proc := range procs {
			before[name] = procCPU(b, proc)
		}
		s0, start := selfCPU(b), time.Now()
		p.deliver(rec, 1)
		profiled := p.profile(b, os.Getenv("BENCH_PROFILE"), 5*time.Second)
		stagetest.WaitFor(b, "verified", 10*time.Minute, func() bool { return p.jobState(rec) == events.JobVerified })
		profiled()
		el, standins := time.Since(start), selfCPU(b)-s0
		var total float64
		for name, proc := range procs {
			spent := (procCPU(b, proc) - before[name]).Seconds() / gib
			total += spent
			b.ReportMetric(spent, name+"-cpu-s/GiB")
		}
		b.ReportMetric(total, "total-cpu-s/GiB")
		b.ReportMetric(standins.Seconds()/gib, "standins-cpu-s/GiB")
		b.ReportMetric(float64(size)/1e6/el.Seconds(), "pipeline-MB/s")
		b.ReportMetric(direct, "direct-MB/s")
		b.ReportMetric(float64(size)/1e6/el.Seconds()/direct, "ratio")
		for name, proc := range procs {
			b.ReportMetric(float64(proc.PeakRSS())/(1<<20), name+"-peak-MiB")
		}
		b.ReportMetric(0, "ns/op")
	}
}

// profile, when dir is set, takes a CPU profile of the broker, fetch and upload
// for the next seconds, then their heap profiles, into dir/<program>.cpu and
// .heap (the pipeline needs METRICS_PPROF and BROKER_PPROF on: BENCH_ENV); the
// returned function waits for them.
func (p *pipeline) profile(b *testing.B, dir string, d time.Duration) func() {
	if dir == "" {
		return func() {}
	}
	save := func(name, path, file string) {
		resp, err := http.Get("http://" + p.metrics[name] + path)
		if err != nil {
			b.Error(err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			b.Error(err)
			return
		}
		defer f.Close()
		io.Copy(f, resp.Body)
	}
	var wg sync.WaitGroup
	for _, name := range []string{"broker", "fetch", "upload"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			save(name, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), name+".cpu")
			save(name, "/debug/pprof/heap", name+".heap")
		}()
	}
	return wg.Wait
}

// selfCPU is this process's CPU time so far.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func procCPU(b *testing.B, p *stagetest.Process) time.Duration {
	d, err := p.CPU()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkResumeCost: upload killed at half of a 2 GiB file; the bytes Drive
// received twice.
func BenchmarkResumeCost(b *testing.B) {
	const size = 2 << 30
	for range b.N {
		p := newPipeline(b, map[string]string{"DRIVE_CHUNK_SIZE": "8MiB", "CHUNK_WINDOW": "64MiB"})
		rec := p.recording(0, size)
		key := events.FileKey(rec.UUID, rec.RecordingFiles[0])
		p.deliver(rec, 1)
		stagetest.WaitFor(b, "half uploaded", 5*time.Minute, func() bool { _, u := p.progress(key); return u >= size/2 })
		p.killAndRestart("upload")
		stagetest.WaitFor(b, "verified", 10*time.Minute, func() bool { return p.jobState(rec) == events.JobVerified })
		b.ReportMetric(float64(p.drive.Received()-size)/(1<<20), "MiB-sent-twice")
		b.ReportMetric(8, "MiB-drive-chunk")
		b.ReportMetric(0, "ns/op")
	}
}

// BenchmarkIdleFootprint: resident memory of the broker and the four stages
// together after ten idle seconds.
func BenchmarkIdleFootprint(b *testing.B) {
	for range b.N {
		p := newPipeline(b, nil)
		time.Sleep(10 * time.Second)
		var total, anon int64
		for name, proc := range map[string]*stagetest.Process{"broker": p.brokers[0], "hook": p.procs["hook"], "fetch": p.procs["fetch"],
			"upload": p.procs["upload"], "notify": p.procs["notify"]} {
			rss := proc.RSS()
			total += rss
			anon += proc.AnonRSS()
			b.ReportMetric(float64(rss)/(1<<20), name+"-MiB")
		}
		b.ReportMetric(float64(total)/(1<<20), "idle-RSS-MiB")
		b.ReportMetric(float64(anon)/(1<<20), "idle-anon-MiB")
		b.ReportMetric(0, "ns/op")
	}
}

func (p *pipeline) jobState(rec events.Recording) string {
	kv, err := p.js.KeyValue(context.Background(), events.BucketJobs)
	if err != nil {
		return ""
	}
	e, err := kv.Get(context.Background(), events.FileJobKey(events.FileKey(rec.UUID, rec.RecordingFiles[0])))
	if err != nil {
		return ""
	}
	if bytes.Contains(e.Value(), []byte(`"state":"verified"`)) {
		return events.JobVerified
	}
	return "not yet"
}

// watchWindow samples the bytes in the chunk stream until the test ends; the
// returned function tells the peak so far.
func (p *pipeline) watchWindow() func() uint64 {
	var mu sync.Mutex
	var peak uint64
	ctx, cancel := context.WithCancel(context.Background())
	p.t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			if s, err := p.js.Stream(ctx, events.StreamChunks); err == nil {
				mu.Lock()
				peak = max(peak, s.CachedInfo().State.Bytes)
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() uint64 { mu.Lock(); defer mu.Unlock(); return peak }
}

// directCopy moves one file from the Zoom stand-in to the Drive stand-in in this
// process, chunk by chunk, with nothing between them: the ceiling for the pipeline.
func directCopy(b *testing.B, rate, size int64) float64 {
	b.Helper()
	zoom, tok := standins.NewZoom(), standins.NewGoogleToken()
	defer zoom.Close()
	defer tok.Close()
	zoom.SetRate(rate)
	d := standins.NewDrive(tok)
	defer d.Close()
	root := d.AddFolder("root", true)
	rec := zoom.AddRecording(events.Recording{UUID: "direct", ID: 1, Topic: "direct", StartTime: time.Now()},
		standins.FileSpec{ID: "direct", FileType: "MP4", Extension: "MP4", Size: size})
	conf, _ := google.JWTConfigFromJSON(tok.KeyJSON(), drive.DriveScope)
	gc := conf.Client(context.Background())
	gc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	start := time.Now()
	form := url.Values{"grant_type": {"account_credentials"}, "account_id": {zoom.AccountID}}
	treq, _ := http.NewRequest(http.MethodPost, zoom.OAuthURL(), strings.NewReader(form.Encode()))
	treq.SetBasicAuth(zoom.ClientID, zoom.ClientSecret)
	treq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	tresp, err := http.DefaultClient.Do(treq)
	if err != nil {
		b.Fatal(err)
	}
	tb, _ := io.ReadAll(tresp.Body)
	tresp.Body.Close()
	token := strings.Split(strings.Split(string(tb), `"access_token":"`)[1], `"`)[0]
	req, _ := http.NewRequest(http.MethodGet, rec.RecordingFiles[0].DownloadURL, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("direct download: %v %v", resp, err)
	}
	defer resp.Body.Close()
	ireq, _ := http.NewRequest(http.MethodPost, d.URL()+"upload/drive/v3/files?uploadType=resumable&supportsAllDrives=true",
		strings.NewReader(`{"name":"direct","parents":["`+root+`"]}`))
	ireq.Header.Set("Content-Type", "application/json")
	iresp, err := gc.Do(ireq)
	if err != nil {
		b.Fatal(err)
	}
	iresp.Body.Close()
	session := iresp.Header.Get("Location")
	buf := make([]byte, 8<<20)
	for off := int64(0); off < size; {
		n, _ := io.ReadFull(resp.Body, buf)
		creq, _ := http.NewRequest(http.MethodPut, session, bytes.NewReader(buf[:n]))
		creq.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%s", off, off+int64(n)-1, strconv.FormatInt(size, 10)))
		cresp, err := gc.Do(creq)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, cresp.Body)
		cresp.Body.Close()
		off += int64(n)
	}
	return float64(size) / 1e6 / time.Since(start).Seconds()
}

// BenchmarkRecovery: a 1 GiB file, Zoom serving 100 MB/s; fetch, upload and then
// the broker each killed with SIGKILL mid-file and started again at once, with the
// production leases and FETCH_ACK_WAIT. Reported: seconds from the restart until
// the file moves again, for fetch until Zoom serves its next byte (the chunk
// stream keeps Drive busy meanwhile), for upload and the broker until Drive
// stores the next byte.
func BenchmarkRecovery(b *testing.B) {
	const size = 1 << 30
	for range b.N {
		for _, killed := range []string{"fetch", "upload", "broker"} {
			p := newPipeline(b, map[string]string{"DRIVE_CHUNK_SIZE": "8MiB", "CHUNK_WINDOW": "64MiB",
				"FETCH_ACK_WAIT": "60s", "FETCH_LEASE": "6s", "UPLOAD_LEASE": "6s"})
			p.zoom.SetRate(100 << 20)
			rec := p.recording(0, size)
			key := events.FileKey(rec.UUID, rec.RecordingFiles[0])
			p.deliver(rec, 1)
			stagetest.WaitFor(b, "a third uploaded", 5*time.Minute, func() bool { _, u := p.progress(key); return u >= size/3 })
			var restarted time.Time
			var took time.Duration
			switch killed {
			case "broker":
				p.restartBroker(0)
				restarted = time.Now()
				took = p.nextDriveByte(b, restarted)
			case "upload":
				p.killAndRestart("upload")
				restarted = time.Now()
				took = p.nextDriveByte(b, restarted)
			case "fetch":
				p.killAndRestart("fetch")
				restarted = time.Now()
				stagetest.WaitFor(b, "Zoom serving again", 5*time.Minute, func() bool {
					for _, c := range p.zoom.Calls() {
						if strings.HasPrefix(c.Path, "/file/") && c.At.After(restarted) {
							took = c.At.Sub(restarted)
							return true
						}
					}
					return false
				})
			}
			stagetest.WaitFor(b, "verified", 10*time.Minute, func() bool { return p.jobState(rec) == events.JobVerified })
			b.ReportMetric(took.Seconds(), killed+"-recovery-s")
		}
		b.ReportMetric(0, "ns/op")
	}
}

// nextDriveByte waits until Drive has stored a byte more than at the call, and
// says how long after since that was.
func (p *pipeline) nextDriveByte(b *testing.B, since time.Time) time.Duration {
	before := p.drive.Received()
	stagetest.WaitFor(b, "Drive storing again", 5*time.Minute, func() bool { return p.drive.Received() > before })
	return time.Since(since)
}

// benchEnv: BENCH_ENV="K=V,K=V" adds settings for an experiment; "broker:K=V"
// (or hook:, fetch:, upload:, notify:) gives one program alone a setting.
func benchEnv() map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(os.Getenv("BENCH_ENV"), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
