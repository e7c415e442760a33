package accesslog

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the access-log pipeline's counters and gauges. Labels are
// bounded (reason is one of a fixed set).
type Metrics struct {
	Received    prometheus.Counter     // entries taken from ALS streams
	SampledOut  prometheus.Counter     // entries dropped by the route's sampleRate
	Spooled     prometheus.Counter     // entries fsynced to the spool (crash-safe)
	Stored      prometheus.Counter     // entries committed to the store
	Spilled     prometheus.Counter     // entries that waited on disk because the store was slow or down
	Dropped     *prometheus.CounterVec // entries lost, by reason: buffer_full, spool_full, spool_error
	StoreErrors prometheus.Counter     // failed store writes (retried)
	Buffered    prometheus.Gauge       // entries in memory, not yet in the spool
	SyncLag     prometheus.Gauge       // at the last spool fsync, seconds since its oldest entry was received
	SyncLags    prometheus.Histogram   // the same, for every spool flush at its fsync: the crash-loss window
	SpoolBytes  prometheus.Gauge       // bytes in the spool
	Backlog     prometheus.Gauge       // spool batches not yet stored
	WriteTime   prometheus.Histogram   // seconds per batch write to the store
	BatchSize   prometheus.Histogram   // entries per stored batch
	Throttled   prometheus.Counter     // seconds ALS streams waited for a late spool flush (Ingester.Admit)

	// The crash-loss window of each spool flush in its parts: how long its
	// oldest entry had waited when the flush started, the encoding and
	// write(2) of its frames, and from then to the return of the fsync
	// that covers them (an fsync in progress, which the write overlapped,
	// then the next one).
	FlushWait  prometheus.Histogram
	FlushWrite prometheus.Histogram
	FlushSync  prometheus.Histogram

	// FlushesGrowing counts the flushes whose fsync covered a segment
	// that grew (no prepared segment was ready: the fsync commits the
	// file's size through the file system's journal); their share is
	// this over FlushSync's count.
	FlushesGrowing prometheus.Counter
}

// flushBuckets resolve the parts of a 100 ms crash-loss window.
var flushBuckets = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Received:    prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_received_total", Help: "Access-log entries received from Envoy."}),
		SampledOut:  prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_sampled_out_total", Help: "Entries dropped by the route's sample rate."}),
		Spooled:     prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_spooled_total", Help: "Entries fsynced to the on-disk spool."}),
		Stored:      prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_stored_total", Help: "Entries committed to the store."}),
		Spilled:     prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_spilled_total", Help: "Entries that waited in the spool because the store was slow or down."}),
		Dropped:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_accesslog_dropped_total", Help: "Entries lost, by reason."}, []string{"reason"}),
		StoreErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_store_errors_total", Help: "Failed batch writes to the store (retried)."}),
		Buffered:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_accesslog_buffered_entries", Help: "Entries in memory not yet in the spool."}),
		SyncLag:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_accesslog_spool_sync_lag_seconds", Help: "At the last spool fsync, how long its oldest entry had waited in memory since it was received: what a crash just before that fsync would have lost."}),
		SyncLags:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_accesslog_spool_sync_lag_hist_seconds", Help: "Per spool flush, at the return of the fsync that made it durable, how long its oldest entry had waited since it was received (the crash-loss window).", Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5}}),
		SpoolBytes:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_accesslog_spool_bytes", Help: "Bytes in the on-disk spool."}),
		Backlog:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_accesslog_spool_backlog_batches", Help: "Spooled batches not yet stored."}),
		WriteTime:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_accesslog_store_write_seconds", Help: "Time per batch write to the store.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		BatchSize:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_accesslog_batch_entries", Help: "Entries per stored batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		Throttled:   prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_receive_throttled_seconds_total", Help: "Seconds ALS streams waited before reading on because the spool flush was late (backpressure to Envoy)."}),
		FlushWait:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_accesslog_spool_flush_wait_seconds", Help: "Per spool flush, how long its oldest entry had waited since it was received when the flush started (the first part of the crash-loss window).", Buckets: flushBuckets}),
		FlushWrite:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_accesslog_spool_flush_write_seconds", Help: "Per spool flush, the time to encode and write its frames (before the fsync).", Buckets: flushBuckets}),
		FlushSync:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_accesslog_spool_fsync_seconds", Help: "Per spool flush, from the end of its write to the return of the fsync that made it durable (including the end of an fsync in progress).", Buckets: flushBuckets}),
	}
	m.FlushesGrowing = prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_accesslog_spool_flushes_growing_total", Help: "Spool flushes made durable by the fsync of a segment that grew (no prepared segment was ready): such an fsync also commits the file's size."})
	for _, r := range []string{"buffer_full", "spool_full", "spool_error"} {
		m.Dropped.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Received, m.SampledOut, m.Spooled, m.Stored, m.Spilled, m.Dropped, m.StoreErrors, m.Buffered, m.SyncLag, m.SyncLags, m.SpoolBytes, m.Backlog, m.WriteTime, m.BatchSize, m.Throttled, m.FlushWait, m.FlushWrite, m.FlushSync, m.FlushesGrowing)
	}
	return m
}
