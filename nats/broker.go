// Package broker is zoomarchive's NATS server for one host: nats-server embedded
// with JetStream on file storage. nats.conf beside this file is the same server
// for a standalone nats-server (compose); a test keeps the two equal.
package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"zoomarchive/shared/config"
	"zoomarchive/shared/obs"
)

// MaxPayload bounds one message, headers included: room for a 1 MiB webhook body
// and for chunk messages of a few MiB. nats-server warns above 8 MiB.
const MaxPayload = 8 << 20

// Config is what differs between hosts and tests.
type Config struct {
	Listen   string // client address, host:port
	Monitor  string // HTTP monitoring address, host:port; empty turns it off
	StoreDir string // JetStream file storage
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
		MaxPayload: MaxPayload,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true, // the process owns its signals and shuts the server down itself
	}
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

// Start runs a server for cfg and waits until it takes connections.
func Start(cfg Config, log *slog.Logger) (*server.Server, error) {
	opts, err := Options(cfg)
	if err != nil {
		return nil, err
	}
	return start(opts, log)
}

// StartFile runs the server a nats-server configuration file describes (compose
// gives nats.conf), with the process keeping its own signals.
func StartFile(path string, log *slog.Logger) (*server.Server, error) {
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, err
	}
	opts.NoSigs = true
	return start(opts, log)
}

func start(opts *server.Options, log *slog.Logger) (*server.Server, error) {
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
	return s, nil
}

var settings = []config.Setting{
	{Name: "BROKER_CONFIG", Usage: "a nats-server configuration file (compose: nats/nats.conf); when set it is the whole configuration, and the other BROKER_ settings but BROKER_MONITOR (where healthcheck asks) are not read"},
	{Name: "BROKER_LISTEN", Default: "127.0.0.1:4222", Usage: "client address of the embedded NATS server"},
	{Name: "BROKER_MONITOR", Default: "127.0.0.1:8222", Usage: "HTTP monitoring address (/varz, /jsz); 'off' to disable", Health: "/healthz"},
	{Name: "BROKER_STORE_DIR", Default: "./data/nats", Usage: "folder of JetStream's file storage"},
	{Name: "BROKER_NAME", Default: "zoomarchive", Usage: "server name; unique per node in a cluster"},
	{Name: "BROKER_CLUSTER", Usage: "host:port for the other nodes of a cluster; empty: one server alone"},
	{Name: "BROKER_ROUTES", Usage: "comma-separated nats-route://host:port of the other nodes"},
}

// Run is bin/broker: the server runs until ctx ends, then shuts down cleanly.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return config.Run(ctx, "broker", "embedded NATS server with JetStream for one host", settings, args, getenv, stdout, stderr,
		func(ctx context.Context, v *config.Values) error {
			log := obs.Logger(stdout, "broker")
			if file := v.String("BROKER_CONFIG"); file != "" {
				if _, err := os.Stat(file); err != nil {
					v.Invalid("BROKER_CONFIG", err.Error())
				}
				if err := v.Err(); err != nil {
					return err
				}
				s, err := StartFile(file, log)
				if err != nil {
					return fmt.Errorf("BROKER_CONFIG %s: %w", file, err)
				}
				return serve(ctx, s, log, file)
			}
			cfg := Config{Listen: v.String("BROKER_LISTEN"), Monitor: v.String("BROKER_MONITOR"), StoreDir: v.String("BROKER_STORE_DIR"),
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
			return serve(ctx, s, log, "")
		})
}

// serve runs s until ctx ends, then shuts it down cleanly.
func serve(ctx context.Context, s *server.Server, log *slog.Logger, file string) error {
	monitor := "off"
	if addr := s.MonitorAddr(); addr != nil {
		monitor = addr.String()
	}
	log.Info("broker ready", "listen", s.ClientURL(), "monitor", monitor, "store_dir", s.StoreDir(), "config", file)
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
