package broker

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics turns the server's own accounting into Prometheus metrics, for
// BROKER_METRICS. Unlike the monitoring port it shows numbers only: no
// connection's address or subscriptions, no account, nothing a scraper that is not
// the operator should see. So it can listen where the monitoring port must not.
type metrics struct {
	s                                           *server.Server
	conns, mem, storage, streamMsgs, streamByts *prometheus.Desc
	inMsgs, outMsgs, inBytes, outBytes, slow    *prometheus.Desc
	pending, ackPending                         *prometheus.Desc
}

func newMetrics(s *server.Server) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("zoomarchive_broker_"+name, help, labels, nil)
	}
	return &metrics{s: s,
		conns:      d("connections", "Client connections now."),
		mem:        d("memory_bytes", "Resident memory as the server reports it."),
		storage:    d("jetstream_storage_bytes", "JetStream file storage in use."),
		streamMsgs: d("stream_messages", "Messages a stream holds.", "stream"),
		streamByts: d("stream_bytes", "Bytes a stream holds.", "stream"),
		inMsgs:     d("in_messages_total", "Messages received from clients."),
		outMsgs:    d("out_messages_total", "Messages sent to clients."),
		inBytes:    d("in_bytes_total", "Bytes received from clients."),
		outBytes:   d("out_bytes_total", "Bytes sent to clients."),
		slow:       d("slow_consumers_total", "Clients that could not keep up and were cut."),
		pending:    d("consumer_pending_messages", "Messages a consumer has not been given yet.", "stream", "consumer"),
		ackPending: d("consumer_ack_pending_messages", "Messages given to a consumer and not acknowledged.", "stream", "consumer"),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.conns, m.mem, m.storage, m.streamMsgs, m.streamByts, m.inMsgs, m.outMsgs,
		m.inBytes, m.outBytes, m.slow, m.pending, m.ackPending} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	if v, err := m.s.Varz(nil); err == nil {
		ch <- prometheus.MustNewConstMetric(m.conns, prometheus.GaugeValue, float64(v.Connections))
		ch <- prometheus.MustNewConstMetric(m.mem, prometheus.GaugeValue, float64(v.Mem))
		ch <- prometheus.MustNewConstMetric(m.inMsgs, prometheus.CounterValue, float64(v.InMsgs))
		ch <- prometheus.MustNewConstMetric(m.outMsgs, prometheus.CounterValue, float64(v.OutMsgs))
		ch <- prometheus.MustNewConstMetric(m.inBytes, prometheus.CounterValue, float64(v.InBytes))
		ch <- prometheus.MustNewConstMetric(m.outBytes, prometheus.CounterValue, float64(v.OutBytes))
		ch <- prometheus.MustNewConstMetric(m.slow, prometheus.CounterValue, float64(v.SlowConsumers))
	}
	js, err := m.s.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.storage, prometheus.GaugeValue, float64(js.Store))
	for _, a := range js.AccountDetails {
		for _, st := range a.Streams {
			ch <- prometheus.MustNewConstMetric(m.streamMsgs, prometheus.GaugeValue, float64(st.State.Msgs), st.Name)
			ch <- prometheus.MustNewConstMetric(m.streamByts, prometheus.GaugeValue, float64(st.State.Bytes), st.Name)
			for _, c := range st.Consumer {
				ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(c.NumPending), st.Name, c.Name)
				ch <- prometheus.MustNewConstMetric(m.ackPending, prometheus.GaugeValue, float64(c.NumAckPending), st.Name, c.Name)
			}
		}
	}
}
