// Package broker is zoomarchive's NATS server for one host: nats-server embedded
// with JetStream on file storage. nats.conf beside this file is the same server
// for a standalone nats-server (compose); a test keeps the two equal.
package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"zoomarchive/shared/bus"
	"zoomarchive/shared/config"
	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/retry"
)

// Config is what differs between hosts and tests.
type Config struct {
	AuthDir  string       // the folder WriteCreds wrote: the only identities accepted
	Topology bus.Topology // declared with the broker's identity once the server runs
	Listen   string       // client address, host:port
	Monitor  string       // HTTP monitoring address, host:port; empty turns it off
	StoreDir string       // JetStream file storage
	// A cluster node also has a unique name, a cluster address and routes to the
	// other nodes; empty Cluster means one server alone.
	Name    string
	Cluster string   // host:port for routes
	Routes  []string // nats-route://host:port of the other nodes
}

// Options are the server options for cfg.
func Options(cfg Config) (*server.Options, error) {
	host, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	name := cfg.Name
	if name == "" {
		name = "zoomarchive"
	}
	opts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true, // the process owns its signals and shuts the server down itself
	}
	limit(opts, cfg.Topology)
	if cfg.Monitor != "" {
		if opts.HTTPHost, opts.HTTPPort, err = splitHostPort(cfg.Monitor); err != nil {
			return nil, fmt.Errorf("monitor address %q: %w", cfg.Monitor, err)
		}
	}
	if cfg.Cluster != "" {
		opts.Cluster.Name = "zoomarchive"
		if opts.Cluster.Host, opts.Cluster.Port, err = splitHostPort(cfg.Cluster); err != nil {
			return nil, fmt.Errorf("cluster address %q: %w", cfg.Cluster, err)
		}
		opts.Routes = server.RoutesFromStr(strings.Join(cfg.Routes, ","))
		if len(opts.Routes) != len(cfg.Routes) {
			return nil, fmt.Errorf("routes %q: want nats-route://host:port, comma-separated", cfg.Routes)
		}
	}
	return opts, nil
}

// Start runs a server for cfg and waits until it takes connections and, for one
// server alone, until the topology is declared (a cluster node declares it once
// enough nodes are up).
func Start(cfg Config, log *slog.Logger) (*server.Server, error) {
	opts, err := Options(cfg)
	if err != nil {
		return nil, err
	}
	return start(opts, cfg, log)
}

// StartFile runs the server a nats-server configuration file describes (compose
// gives nats.conf), with cfg's identities and topology and the process keeping its
// own signals.
func StartFile(path string, cfg Config, log *slog.Logger) (*server.Server, error) {
	opts, err := FileOptions(path, cfg.Topology)
	if err != nil {
		return nil, err
	}
	return start(opts, cfg, log)
}

// FileOptions are the server options of a nats-server configuration file, with
// the process keeping its own signals and the limits of the contract and t.
func FileOptions(path string, t bus.Topology) (*server.Options, error) {
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, err
	}
	opts.NoSigs = true
	limit(opts, t)
	return opts, nil
}

// limit sets the server's limits from the contract and the topology, the same
// whether the options came from Config or from a file (which leaves them out):
// one message at most events.MaxPayload, headers included; a protocol line long
// enough for a program's CONNECT, whose JWT carries its permissions; and JetStream
// on disk at most BROKER_STORAGE, whatever the streams' own limits say. The
// account of the pipeline is the only one with JetStream, so this is its limit;
// its JWT says unlimited because the broker cannot sign a new one (the account's
// key stays out of it), and the server's limit holds over the account's.
func limit(opts *server.Options, t bus.Topology) {
	opts.MaxPayload, opts.MaxControlLine = events.MaxPayload, events.MaxControlLine
	opts.JetStreamMaxStore = t.Storage
}

func start(opts *server.Options, cfg Config, log *slog.Logger) (*server.Server, error) {
	t, err := readTrust(cfg.AuthDir)
	if err != nil {
		return nil, fmt.Errorf("BROKER_AUTH_DIR: %w", err)
	}
	if err := t.apply(opts); err != nil {
		return nil, fmt.Errorf("BROKER_AUTH_DIR %s: %w", cfg.AuthDir, err)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	s.SetLoggerV2(slogAdapter{log}, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats-server on %s:%d not ready after 30s", opts.Host, opts.Port)
	}
	declared := make(chan error, 1)
	go func() { declared <- declare(s, t, cfg.Topology, opts.Cluster.Port != 0, log) }()
	if opts.Cluster.Port == 0 {
		select {
		case err := <-declared:
			if err != nil {
				s.Shutdown()
				return nil, err
			}
		case <-time.After(30 * time.Second):
			s.Shutdown() // ends declare too
			return nil, errors.New("the topology was not declared within 30s; the lines above say why")
		}
	}
	return s, nil
}

// declare applies the topology as the broker's own identity, retrying until it
// holds (a cluster waits for its peers) or the server stops. The nodes of a
// cluster all declare it; the tries are spread at random, because of two equal
// requests in flight at once the meta leader answers only one, and nodes started
// together would otherwise keep colliding.
func declare(s *server.Server, t *trust, topo bus.Topology, clustered bool, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { s.WaitForShutdown(); cancel() }()
	if clustered {
		time.Sleep(rand.N(2 * time.Second))
	}
	for try := 0; ; try++ {
		err := declareOnce(ctx, s, t, topo)
		if err == nil {
			log.Info("topology declared", "replicas", topo.Replicas, "chunk_window", topo.ChunkWindow, "storage", topo.Storage)
			return nil
		}
		wait := bus.RetryWait(try)
		log.Warn("topology not declared yet; retrying", "err", err, "retry_in", wait)
		if retry.Sleep(ctx, wait) != nil {
			return errors.New("the server stopped before the topology was declared")
		}
	}
}

func declareOnce(ctx context.Context, s *server.Server, t *trust, topo bus.Topology) error {
	admin := bus.Config{Creds: t.adminCreds, Identity: events.IdentityBroker}
	nc, err := nats.Connect("", append(admin.Options(), nats.InProcessServer(s))...)
	if err != nil {
		return fmt.Errorf("the broker's own identity (%s): %w", t.adminCreds, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return topo.Ensure(ctx, js)
}

var settings = append([]config.Setting{
	{Name: "BROKER_CONFIG", Usage: "a nats-server configuration file (compose: nats/nats.conf); when set it replaces the other BROKER_ settings but BROKER_AUTH_DIR, BROKER_METRICS and BROKER_MONITOR (where healthcheck asks)"},
	{Name: "BROKER_AUTH_DIR", Required: true, Usage: "the folder `broker creds DIR` wrote: the identities the broker accepts (its broker/ part is enough)"},
	{Name: "BROKER_LISTEN", Default: "127.0.0.1:4222", Usage: "client address of the embedded NATS server"},
	{Name: "BROKER_MONITOR", Default: "127.0.0.1:8222", Usage: "HTTP monitoring address (/varz, /jsz, /connz: connections and subjects, for the operator alone); 'off' to disable", Health: "/healthz"},
	{Name: "BROKER_METRICS", Default: "127.0.0.1:9100", Usage: "Prometheus /metrics of the broker (counts only, nothing of who is connected); 'off' to disable"},
	{Name: "BROKER_REVOKE_GRACE", Default: "30s", Usage: "after an identity is renewed (creds --renew), how long the broker still takes the old one: the program takes its new file well within it"},
	{Name: "BROKER_PPROF", Default: "off", Usage: "on: also serve Go's profiles (/debug/pprof/) on BROKER_METRICS, to see where the broker spends CPU and memory"},
	{Name: "BROKER_STORE_DIR", Default: "./data/nats", Usage: "folder of JetStream's file storage"},
	{Name: "BROKER_NAME", Default: "zoomarchive", Usage: "server name; unique per node in a cluster"},
	{Name: "BROKER_CLUSTER", Usage: "host:port for the other nodes of a cluster; empty: one server alone"},
	{Name: "BROKER_ROUTES", Usage: "comma-separated nats-route://host:port of the other nodes; the routes' password comes from BROKER_AUTH_DIR"},
}, bus.TopologySettings...)

// Run is bin/broker: the server runs until ctx ends, then shuts down cleanly.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return config.Run(ctx, "broker", "embedded NATS server with JetStream for one host", settings, args, getenv, stdout, stderr,
		func(ctx context.Context, v *config.Values) error {
			log := obs.Logger(stdout, "broker")
			auth, topo, metricsAddr := v.String("BROKER_AUTH_DIR"), bus.ReadTopology(v), v.String("BROKER_METRICS")
			profiles, grace := v.OnOff("BROKER_PPROF"), v.Duration("BROKER_REVOKE_GRACE")
			if auth != "" {
				if _, err := readTrust(auth); err != nil {
					v.Invalid("BROKER_AUTH_DIR", err.Error())
				}
			}
			if file := v.String("BROKER_CONFIG"); file != "" {
				if _, err := os.Stat(file); err != nil {
					v.Invalid("BROKER_CONFIG", err.Error())
				}
				if err := v.Err(); err != nil {
					return err
				}
				s, err := StartFile(file, Config{AuthDir: auth, Topology: topo}, log)
				if err != nil {
					return fmt.Errorf("BROKER_CONFIG %s: %w", file, err)
				}
				return serve(ctx, s, log, file, metricsAddr, auth, grace, profiles)
			}
			cfg := Config{AuthDir: auth, Topology: topo, Listen: v.String("BROKER_LISTEN"), Monitor: v.String("BROKER_MONITOR"), StoreDir: v.String("BROKER_STORE_DIR"),
				Name: v.String("BROKER_NAME"), Cluster: v.String("BROKER_CLUSTER"), Routes: v.List("BROKER_ROUTES")}
			if cfg.Cluster == "" && len(cfg.Routes) > 0 {
				v.Invalid("BROKER_ROUTES", "needs BROKER_CLUSTER")
			}
			if cfg.Monitor == "off" {
				cfg.Monitor = ""
			}
			if err := v.Err(); err != nil {
				return err
			}
			s, err := Start(cfg, log)
			if err != nil {
				return err
			}
			return serve(ctx, s, log, "", metricsAddr, auth, grace, profiles)
		}, credsCommand)
}

// credsCommand writes a fresh set of identities: `broker creds DIR`.
var credsCommand = config.Command{
	Name: "creds", Usage: "write a fresh set of identities into DIR: <program>.creds for each program, operator.creds, and the broker's side in DIR/broker",
	Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "replace a set DIR already holds (every program must then get its new file)"},
		&cli.StringFlag{Name: "renew", Usage: "give this one program (hook, fetch, upload, notify or operator) a new identity, the others keeping theirs; its old one stops working BROKER_REVOKE_GRACE after the broker sees the change"}},
	Action: func(_ context.Context, _ *config.Values, c *cli.Context) error {
		if c.NArg() != 1 {
			return errors.New("usage: broker creds [--force | --renew PROGRAM] DIR")
		}
		dir := c.Args().First()
		if id := c.String("renew"); id != "" {
			old, renewed, err := RenewCreds(dir, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "renewed %s: its new identity %s is in %s; the running %s takes it within %s, and the broker stops taking the old one (%s) BROKER_REVOKE_GRACE after it sees the change\n",
				id, renewed, CredsFile(dir, id), id, config.WatchEvery, cmp.Or(old, "none"))
			return nil
		}
		if err := WriteCreds(dir, c.Bool("force")); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "wrote %s: %s.creds, and broker/, the broker's side (BROKER_AUTH_DIR=%s)\n",
			dir, strings.Join(events.ClientIdentities, ".creds, "), dir)
		return nil
	},
}

// serve runs s until ctx ends, then shuts it down cleanly; it follows the account
// in authDir (an identity renewed).
func serve(ctx context.Context, s *server.Server, log *slog.Logger, file, metricsAddr, authDir string, grace time.Duration, profiles bool) error {
	watchAccount(ctx, s, authDir, grace, log)
	if metricsAddr != "off" {
		reg := obs.Registry()
		reg.MustRegister(newMetrics(s))
		ml, err := obs.Listen(metricsAddr, reg, func() error { return nil }, profiles)
		if err != nil {
			s.Shutdown()
			return fmt.Errorf("BROKER_METRICS %s: %w", metricsAddr, err)
		}
		mctx, stop := context.WithCancel(context.Background())
		defer stop()
		go ml.Serve(mctx)
		metricsAddr = ml.Addr()
	}
	monitor := "off"
	if addr := s.MonitorAddr(); addr != nil {
		monitor = addr.String()
	}
	log.Info("broker ready", "listen", s.ClientURL(), "monitor", monitor, "metrics", metricsAddr, "store_dir", s.StoreDir(), "config", file)
	<-ctx.Done()
	s.Shutdown()
	s.WaitForShutdown()
	log.Info("broker stopped")
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// slogAdapter sends nats-server's own log lines to the stage's JSON log.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Noticef(f string, v ...any) { a.log.Info(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Warnf(f string, v ...any)   { a.log.Warn(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Fatalf(f string, v ...any)  { a.log.Error(fmt.Sprintf(f, v...), "fatal", true) }
func (a slogAdapter) Errorf(f string, v ...any)  { a.log.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debugf(f string, v ...any)  { a.log.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Tracef(f string, v ...any)  { a.log.Debug(fmt.Sprintf(f, v...)) }
