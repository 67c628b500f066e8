package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"zoomarchive/shared/events"
	"zoomarchive/shared/obs"
	"zoomarchive/shared/retry"
)

// Conn is a program's broker connection; for a consuming stage, with the
// pipeline's streams and job bucket in place.
type Conn struct {
	NC          *nats.Conn
	JS          jetstream.JetStream
	KV          jetstream.KeyValue // the job bucket, once Bucket opened it
	MetricsAddr string             // where /metrics, /healthz and /readyz are served
	Health      *Health            // faults that fail /readyz and go with the heartbeat
	Creds       *Credentials       // the credentials in use, with the heartbeat
	cfg         Config
	log         *slog.Logger
	up          atomic.Bool
	stop        func()
}

// Close stops the metrics listener and the connection.
func (c *Conn) Close() { c.stop() }

// Open is a consuming stage's start: Listen, then Bucket, then Up. An error says
// why it stopped, ctx's end included.
func Open(ctx context.Context, c Config, log *slog.Logger, reg *prometheus.Registry, metricsAddr string) (*Conn, error) {
	conn, err := Listen(c, log, reg, metricsAddr)
	if err != nil {
		return nil, err
	}
	if err := conn.Bucket(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	conn.Up(ctx, nil)
	return conn, nil
}

// Listen connects as c's identity (reconnecting in the background while the broker
// is away) and serves /metrics, /healthz and /readyz on metricsAddr: ready once Up
// was called, while connected, and while no Health fault is set.
func Listen(c Config, log *slog.Logger, reg *prometheus.Registry, metricsAddr string) (*Conn, error) {
	nc, js, err := dial(c, log)
	if err != nil {
		return nil, err
	}
	conn := &Conn{NC: nc, JS: js, Health: &Health{}, Creds: newCredentials(), cfg: c, log: log}
	ml, err := obs.Listen(metricsAddr, reg, func() error {
		switch {
		case !nc.IsConnected():
			return errors.New("broker not connected")
		case !conn.up.Load():
			return errors.New("starting")
		}
		return conn.Health.Err()
	}, c.Profiles)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("METRICS_ADDR %s: %w", metricsAddr, err)
	}
	mctx, stopMetrics := context.WithCancel(context.Background())
	go ml.Serve(mctx)
	conn.MetricsAddr, conn.stop = ml.Addr(), func() { stopMetrics(); nc.Close() }
	return conn, nil
}

// Bucket waits for the broker's topology and opens the job bucket as KV; refused
// credentials or ctx's end stop the wait with an error.
func (c *Conn) Bucket(ctx context.Context) error {
	kv, err := bucket(ctx, c.NC, c.JS, c.cfg, c.log)
	c.KV = kv
	return err
}

// Refused is the broker's refusal of the connection's credentials, or nil.
func (c *Conn) Refused() error { return Refused(c.NC, c.cfg) }

// Up says the program is ready and sends its heartbeat until ctx ends, with the
// Health faults and what fill adds, and follows NATS_CREDS (creds.go).
func (c *Conn) Up(ctx context.Context, fill func(*events.Heartbeat)) {
	c.up.Store(true)
	if c.cfg.held != nil {
		c.watchCreds(ctx)
	}
	go Beat(ctx, c.JS, c.cfg.Identity, func(hb *events.Heartbeat) {
		hb.Faults, hb.Credentials = c.Health.Faults(), c.Creds.all()
		if fill != nil {
			fill(hb)
		}
	}, c.Creds.changed)
}

// Dial is Open for a one-off command (fetch backfill, say): no listener, no
// heartbeat.
func Dial(ctx context.Context, c Config, log *slog.Logger) (*Conn, error) {
	nc, js, err := dial(c, log)
	if err != nil {
		return nil, err
	}
	kv, err := bucket(ctx, nc, js, c, log)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Conn{NC: nc, JS: js, KV: kv, cfg: c, log: log, stop: nc.Close}, nil
}

func dial(c Config, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := Connect(c, log)
	if err != nil {
		return nil, nil, fmt.Errorf("NATS_URL: %w", err) // the URL itself may hold credentials
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// bucket waits for the broker's topology and opens the job bucket; credentials
// the broker refuses, or ctx's end, end the wait.
func bucket(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, c Config, log *slog.Logger) (jetstream.KeyValue, error) {
	for try := 0; ; try++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err := js.KeyValue(actx, events.BucketJobs)
		cancel()
		if err == nil {
			return kv, nil
		}
		if err := Refused(nc, c); err != nil {
			return nil, err
		}
		wait := RetryWait(try)
		log.Warn("waiting for the broker's streams", "err", err, "retry_in", wait)
		if err := retry.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("stopped while waiting for the broker's streams as %s: %w", c.Identity, err)
		}
	}
}

// RetryWait is the wait before the next try at what the broker does not have yet
// (its streams, a cluster's leader): quick at first, at most 5 s apart, with
// jitter so that the nodes of a cluster do not keep asking at the same moment.
func RetryWait(try int) time.Duration {
	return min(retry.Backoff(250*time.Millisecond, try), 5*time.Second)
}

// Consume hands cons's messages to handle one at a time until ctx ends; handle
// acknowledges each.
func Consume(ctx context.Context, cons jetstream.Consumer, log *slog.Logger, handle func(context.Context, jetstream.Msg)) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(wctx))
		cancel()
		switch {
		case err == nil:
			handle(ctx, msg)
		case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrNoMessages):
		default:
			log.Warn("consumer read failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// Reach is a deployment check of c: one connection as its identity, without
// retries, and for an identity that reads the job bucket, the bucket.
func Reach(ctx context.Context, c Config, readsBucket bool) error {
	nc, err := nats.Connect(c.URL, append(c.Options(), nats.Timeout(5*time.Second))...)
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return fmt.Errorf("NATS_CREDS %s: the broker refused them: %w", c.Creds, err)
	case err != nil:
		return fmt.Errorf("NATS_URL: %w", err) // the URL itself may hold credentials
	}
	defer nc.Close()
	if !readsBucket {
		return nil
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := js.KeyValue(ctx, events.BucketJobs); err != nil {
		return fmt.Errorf("the job bucket as %s: %w (the broker logs \"topology declared\" once it made it)", c.Identity, err)
	}
	return nil
}
