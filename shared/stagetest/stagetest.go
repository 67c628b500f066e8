// Package stagetest starts what a stage's tests need through the front door: the
// project's embedded broker with file storage, a stage's run() with a test
// environment and captured JSON logs, and a TCP proxy that can stall a connection.
package stagetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	broker "zoomarchive/nats"
	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/serviceaccount"
	"zoomarchive/shared/standins"
)

// handedOut are the addresses FreeAddr gave: the kernel may offer a port again as
// soon as it is closed, and two servers of one test must not get the same.
var handedOut sync.Map

// FreeAddr is a loopback address with a port nobody listened on a moment ago, and
// that no earlier call in this process returned.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			return addr
		}
	}
}

// authOf maps a test broker's URL to its credentials folder.
var authOf sync.Map

// DefaultTopology is the topology with the stages' default settings.
var DefaultTopology = bus.Topology{Replicas: 1, EventsMaxAge: 720 * time.Hour, EventsDedupe: 2 * time.Hour, ChunkWindow: 64 << 20, Storage: 3 << 30}

// Broker runs the project's embedded broker on addr with file storage in dir and
// the identities of dir/auth (written on first use, so a restart on the same dir
// keeps them), until the test ends or the caller shuts it down.
func Broker(t testing.TB, addr, dir string) *server.Server {
	t.Helper()
	auth := Auth(t, dir)
	s, err := broker.Start(broker.Config{Listen: addr, StoreDir: dir, AuthDir: auth, Topology: DefaultTopology}, obs.Logger(io.Discard, "broker"))
	if err != nil {
		t.Fatal(err)
	}
	authOf.Store("nats://"+addr, auth)
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Auth is the credentials folder dir/auth, written when it is not there yet.
func Auth(t testing.TB, dir string) string {
	t.Helper()
	auth := filepath.Join(dir, "auth")
	if err := broker.WriteCreds(auth, false); err != nil && !errors.Is(err, broker.ErrCredsExist) {
		t.Fatal(err)
	}
	return auth
}

// NewBroker is a broker on a fresh port and folder; it returns its URL.
func NewBroker(t testing.TB) string {
	addr := FreeAddr(t)
	Broker(t, addr, t.TempDir())
	return "nats://" + addr
}

// UseAuth says that the broker (or the cluster) at url accepts the identities in
// auth, for brokers a test runs as processes.
func UseAuth(url, auth string) { authOf.Store(url, auth) }

// Creds is the credentials file of identity for the broker at url (the first of a
// cluster's comma-separated URLs).
func Creds(t testing.TB, url, identity string) string {
	t.Helper()
	first, _, _ := strings.Cut(url, ",")
	auth, ok := authOf.Load(first)
	if !ok {
		t.Fatalf("no credentials known for the broker at %s", url)
	}
	return broker.CredsFile(auth.(string), identity)
}

// Env is what a program needs to reach the broker at url as identity.
func Env(t testing.TB, url, identity string) map[string]string {
	return map[string]string{"NATS_URL": url, "NATS_CREDS": Creds(t, url, identity)}
}

// Merge is one map of the settings in envs, a later one's replacing an earlier
// one's; envs are left as they were.
func Merge(envs ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, env := range envs {
		maps.Copy(out, env)
	}
	return out
}

// Topology declares the pipeline's streams and job bucket as the broker would with
// the default settings and the given CHUNK_WINDOW (js must be the operator's); it
// returns the job bucket.
func Topology(t testing.TB, js jetstream.JetStream, chunkWindow string) jetstream.KeyValue {
	t.Helper()
	window, err := config.ParseBytes(chunkWindow)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	topo := DefaultTopology
	topo.ChunkWindow = window
	if err := topo.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, events.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// JetStream is a client connection for assertions, as the operator, closed when
// the test ends.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	return JetStreamAs(t, url, events.IdentityOperator)
}

// JetStreamAs is JetStream as one program's identity: what that program, or an
// attacker holding its credentials, may do.
func JetStreamAs(t testing.TB, url, identity string) jetstream.JetStream {
	t.Helper()
	c := bus.Config{Creds: Creds(t, url, identity), Identity: identity}
	nc, err := nats.Connect(url, c.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// StreamMsgs reads every message a stream holds.
func StreamMsgs(t testing.TB, url, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := JetStream(t, url).Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted (acknowledged on a work queue)
		}
		out = append(out, m)
	}
	return out
}

// Alerts reads the alerts of kind on ARCHIVE: those raised and those resolved.
func Alerts(t testing.TB, url, kind string) (raised, resolved []events.Alert) {
	t.Helper()
	for _, m := range StreamMsgs(t, url, events.StreamArchive) {
		var a events.Alert
		if m.Subject != events.AlertSubject(kind) || json.Unmarshal(m.Data, &a) != nil {
			continue
		}
		if a.Resolved {
			resolved = append(resolved, a)
		} else {
			raised = append(raised, a)
		}
	}
	return raised, resolved
}

// Logs collects a stage's JSON log lines.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines are the log lines parsed so far.
func (l *Logs) Lines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// RunFunc is a stage's run.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Stage is a stage running in-process through its run function.
type Stage struct {
	Logs   *Logs
	cancel context.CancelFunc
	done   chan error
}

// Start runs a stage with env as its whole environment; it stops when the test ends.
func Start(t testing.TB, name string, run RunFunc, env map[string]string) *Stage {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stage{Logs: &Logs{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, []string{name}, func(k string) string { return env[k] }, s.Logs, s.Logs) }()
	t.Cleanup(func() {
		s.Stop()
		noRefusals(t, name, s.Logs)
	})
	return s
}

// noRefusals fails the test when the broker refused the program something: its
// permissions (events.Permissions) lack what its code does.
func noRefusals(t testing.TB, name string, logs *Logs) {
	for _, m := range logs.Lines() {
		if m["msg"] == bus.RefusedOperation {
			t.Errorf("%s: the broker refused: %v", name, m["err"])
		}
	}
}

// WaitLog returns the first log line with message msg, failing the test after 30 s
// or when the stage stops first.
func (s *Stage) WaitLog(t testing.TB, msg string) map[string]any {
	t.Helper()
	return waitLog(t, s.Logs, s.done, msg)
}

// waitLog waits for a log line, watching done for the program's end.
func waitLog(t testing.TB, logs *Logs, done chan error, msg string) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		for _, m := range logs.Lines() {
			if m["msg"] == msg {
				return m
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("stopped (%v) before logging %q:\n%s", err, msg, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no log line %q within 30s:\n%s", msg, logs.String())
	return nil
}

// Metric is the value of one sample line of the /metrics on addr, e.g.
// zoomarchive_hook_requests_total{outcome="accepted"}; 0 when absent.
func Metric(t testing.TB, addr, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return 0
}

// Stop cancels the stage as SIGTERM would and returns what run returned.
func (s *Stage) Stop() error {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(20 * time.Second):
		return context.DeadlineExceeded
	}
}

// StallProxy forwards TCP to a target; while paused it holds every byte, like a
// peer that stopped answering without closing the connection.
type StallProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
}

// NewStallProxy listens on loopback and forwards to target.
func NewStallProxy(t testing.TB, target string) *StallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &StallProxy{ln: ln}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(func() { p.Resume(); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
	return p
}

// Addr is where to connect instead of the target.
func (p *StallProxy) Addr() string { return p.ln.Addr().String() }

func (p *StallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.paused {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Pause holds every byte from now on.
func (p *StallProxy) Pause() { p.mu.Lock(); p.paused = true; p.mu.Unlock() }

// Resume lets the held bytes through.
func (p *StallProxy) Resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	p.cond.Broadcast()
}

// The test binary doubles as a stage process, so that a test can kill a stage with
// SIGKILL as a crash would, without building anything.
const stageEnv = "ZOOMARCHIVE_TEST_STAGE"

// MainIfStage, called first in TestMain, runs the stage's main instead of the tests
// when this test binary was started by StartProcess.
func MainIfStage(name string, main func()) {
	if os.Getenv(stageEnv) == name {
		main()
		os.Exit(0)
	}
}

// Process is a stage running as its own process.
type Process struct {
	Logs *Logs
	cmd  *exec.Cmd
	done chan error
}

// StartProcess runs this test binary as the named stage with env as its whole
// environment; TestMain must call MainIfStage.
func StartProcess(t testing.TB, name string, env map[string]string) *Process {
	t.Helper()
	return StartBinary(t, os.Args[0], env, stageEnv+"="+name)
}

// StartBinary runs a program with env (and extra NAME=value pairs) as its whole
// environment, its output in Logs; it is killed when the test ends.
func StartBinary(t testing.TB, path string, env map[string]string, extra ...string) *Process {
	t.Helper()
	p := &Process{Logs: &Logs{}, done: make(chan error, 1)}
	p.cmd = exec.Command(path)
	p.cmd.Env = extra
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.Logs, p.Logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.Kill()
		noRefusals(t, filepath.Base(path), p.Logs)
	})
	return p
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends the process sig (SIGHUP: look at the secret files now).
func (p *Process) Signal(sig os.Signal) { p.cmd.Process.Signal(sig) }

// Kill ends the process with SIGKILL, as a crash or the OOM killer would.
func (p *Process) Kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
	}
}

// WaitLog waits for a log line with message msg.
func (p *Process) WaitLog(t testing.TB, msg string) map[string]any {
	t.Helper()
	return waitLog(t, p.Logs, p.done, msg)
}

// CPU is the CPU time the process has used, user and system (/proc/<pid>/stat).
func (p *Process) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0, err
	}
	// After the command name in parentheses: state, then utime and stime as the
	// 12th and 13th fields, in clock ticks (100 a second on Linux).
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", p.Pid(), len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / 100, nil
}

// PeakRSS is the process's high-water resident memory in bytes (VmHWM).
func (p *Process) PeakRSS() int64 { return p.status("VmHWM:") }

// RSS is the process's resident memory now, in bytes (VmRSS).
func (p *Process) RSS() int64 { return p.status("VmRSS:") }

// AnonRSS is the part of RSS that is the process's own (RssAnon): its heap and
// stacks, not the binary's pages, which the kernel may drop and read again.
func (p *Process) AnonRSS() int64 { return p.status("RssAnon:") }

// status reads one kB field of /proc/<pid>/status, in bytes; -1 when unreadable.
func (p *Process) status(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// WaitFor polls cond every 20 ms until it holds, failing the test after within.
func WaitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	Eventually(t, what, within, 20*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
}

// Eventually calls f, pausing every between calls, until it returns nil; after
// within it fails the test with f's last error.
func Eventually(t testing.TB, what string, within, every time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(every)
	}
}

// Command runs one of a program's commands (args start with the program's name)
// with env as its whole environment; it returns what the command printed.
func Command(run RunFunc, env map[string]string, args ...string) (string, error) {
	out := &Logs{} // written by the log and the command at once
	err := run(context.Background(), args, func(k string) string { return env[k] }, out, out)
	return out.String(), err
}

// EnvExample checks the settings template (.env.example at the repository's top)
// against a program's settings: each is listed, with its default or empty (a
// required one, or one left to the template's reader), but those named in except.
func EnvExample(t testing.TB, settings []config.Setting, except ...string) {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(here), "../../.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimPrefix(line, "#") // a commented-out example counts
		if name, val, ok := strings.Cut(line, "="); ok && name != "" && strings.ToUpper(name) == name && !strings.ContainsAny(name, " \t") {
			listed[name] = val
		}
	}
	for _, s := range settings {
		val, ok := listed[s.Name]
		switch {
		case slices.Contains(except, s.Name):
		case !ok:
			t.Errorf(".env.example does not list %s (%s)", s.Name, s.Usage)
		case val != "" && val != s.Default:
			t.Errorf(".env.example shows %s=%s; its default is %q", s.Name, val, s.Default)
		}
	}
}

// Rewrite writes content over the file at path in place, as docs/operating.md's `tee` steps
// do: the file keeps its inode, owner and mode, so a container's mount of it sees
// the change. A new file is made readable by its owner alone.
func Rewrite(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// GoogleAccount is the address of the stage's own service account at the token
// stand-in (one Google identity per job).
func GoogleAccount(stage string) string { return stage + "@standin-project.iam.gserviceaccount.com" }

// GoogleKey makes the stage's own service account at tok, whose delegation
// allows its job's scope alone (serviceaccount.Jobs), and writes its key file; it
// returns the file's path, for GOOGLE_APPLICATION_CREDENTIALS.
func GoogleKey(t testing.TB, tok *standins.GoogleToken, stage string) string {
	t.Helper()
	return WriteFile(t, stage+"-key.json", tok.AddAccount(GoogleAccount(stage), serviceaccount.JobOf(stage).Scope))
}

// WriteFile writes b into a new file of the test's, readable by its owner alone,
// and returns its path.
func WriteFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
