package akserver

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
)

// metrics are the server's Prometheus metrics.
type metrics struct {
	decisions  *prometheus.CounterVec
	charged    prometheus.Counter
	holdsOpens prometheus.Counter
	holdsClose *prometheus.CounterVec
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry, version string, clerkStats func() akclerk.CacheStats,
	openHolds func(context.Context) (agentkey.HoldStats, error),
) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentkey_decisions_total",
			Help: "Decisions of the decision API, by endpoint (authorize, charge), outcome " +
				"(allow, deny) and reason of a denial.",
		}, []string{"endpoint", "outcome", "reason"}),
		charged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentkey_charged_microunits_total",
			Help: "Amount charged through the decision API (charges and settlements), " +
				"in micro-units of the currency (1 USD = 1,000,000).",
		}),
		holdsOpens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "agentkey_holds_opened_total",
			Help: "Holds opened through the decision API.",
		}),
		holdsClose: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentkey_holds_closed_total",
			Help: "Holds closed through this server, by outcome (settled, released).",
		}, []string{"outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "agentkey_http_requests_total",
			Help: "HTTP requests, by route pattern and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "agentkey_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "agentkey_build_info",
		Help:        "Always 1; the version label is the server's version.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	build.Set(1)
	cs := []prometheus.Collector{m.decisions, m.charged, m.holdsOpens,
		m.holdsClose, m.requests, m.latency, build, newOpenHoldsCollector(openHolds)}
	if clerkStats != nil {
		for name, read := range map[string]func(akclerk.CacheStats) uint64{
			"hits":        func(st akclerk.CacheStats) uint64 { return st.Hits },
			"misses":      func(st akclerk.CacheStats) uint64 { return st.Misses },
			"clerk_calls": func(st akclerk.CacheStats) uint64 { return st.ClerkCalls },
		} {
			cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "agentkey_clerk_cache_" + name + "_total",
				Help: "Clerk verifications: cache hits, cache misses, and calls made to Clerk.",
			}, func() float64 { return float64(read(clerkStats())) }))
		}
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("akserver: register metrics: %w", err)
		}
	}
	return m, nil
}

// newRegistry returns a registry with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// decision counts one decision.
func (m *metrics) decision(endpoint string, reason agentkey.Reason) {
	outcome := "allow"
	if reason != "" {
		outcome = "deny"
	}
	m.decisions.WithLabelValues(endpoint, outcome, string(reason)).Inc()
}

func (m *metrics) holdOpened() {
	m.holdsOpens.Inc()
}

func (m *metrics) holdClosed(res agentkey.CloseResult) {
	if res.Replayed {
		return
	}
	outcome := "released"
	if res.Hold.State == agentkey.HoldSettled {
		outcome = "settled"
		m.charged.Add(float64(res.Charged))
	}
	m.holdsClose.WithLabelValues(outcome).Inc()
}

// openHoldsCollector reports the open holds of the database, those of every
// server that shares it, read from the store at each scrape.
type openHoldsCollector struct {
	read          func(context.Context) (agentkey.HoldStats, error)
	count, amount *prometheus.Desc
}

// openHoldsTimeout bounds the store query of one scrape.
const openHoldsTimeout = 5 * time.Second

func newOpenHoldsCollector(read func(context.Context) (agentkey.HoldStats, error),
) *openHoldsCollector {
	return &openHoldsCollector{
		read: read,
		count: prometheus.NewDesc("agentkey_holds_open",
			"Open holds in the database, of every server that shares it, expired ones not "+
				"yet released included.", nil, nil),
		amount: prometheus.NewDesc("agentkey_holds_open_microunits",
			"What the open holds hold, in micro-units of the currency.", nil, nil),
	}
}

func (c *openHoldsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.count
	ch <- c.amount
}

// Collect reads the store; a failure makes the scrape report an error for
// these metrics rather than a stale or zero value.
func (c *openHoldsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), openHoldsTimeout)
	defer cancel()
	st, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.count, err)
		ch <- prometheus.NewInvalidMetric(c.amount, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(st.Count))
	ch <- prometheus.MustNewConstMetric(c.amount, prometheus.GaugeValue, float64(st.Amount))
}

// route measures the requests of one route pattern. Its observers are
// resolved once, so that a request costs no label lookup for latency.
type route struct {
	pattern string
	latency prometheus.Observer
	codes   *prometheus.CounterVec
}

func (m *metrics) route(pattern string) *route {
	return &route{pattern: pattern, latency: m.latency.WithLabelValues(pattern), codes: m.requests}
}

func (rt *route) observe(start time.Time, status int) {
	rt.latency.Observe(time.Since(start).Seconds())
	rt.codes.WithLabelValues(rt.pattern, strconv.Itoa(status)).Inc()
}
