// Package redisstore is the Redis backend of package ratelimit, on
// go-redis/v9 (standalone, Sentinel, Cluster). All hits of one request —
// and of every request that arrives while a call is in flight — are decided
// by one Lua script call (EVALSHA); on a Cluster, one call per hash slot,
// pipelined. Every call has a deadline; the queue in front of Redis is
// bounded so requests never pile up; keys already over their fixed window
// are answered from a local cache until the window ends.
//
// It owns the Redis wire format of counters (fixed windows in
// envoyproxy/ratelimit's format). It must not import the sidecars, gRPC or
// xDS.
package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-edge/gatehouse/ratelimit"
)

// Defaults.
const (
	DefaultTimeout   = 50 * time.Millisecond
	DefaultMaxBatch  = 512
	DefaultWorkers   = 2
	DefaultQueueSize = 4096
	DefaultCacheSize = 100000
)

// ErrQueueFull is returned when more requests wait for Redis than the queue
// holds; the service then applies each limit's failure mode (its onFailure,
// else the service's) at once.
var ErrQueueFull = errors.New("redis backend: request queue is full")

// Options configure a Store. Client or URL is required.
type Options struct {
	// URL is redis://[:password@]host:port[/db] (standalone),
	// redis+sentinel://[:password@]host:port[,host:port...]/master[/db], or
	// redis+cluster://[:password@]host:port[,host:port...]. The schemes
	// rediss, rediss+sentinel and rediss+cluster speak TLS.
	URL string
	// PasswordFile holds the AUTH password (trailing newline trimmed); it
	// wins over a password in URL.
	PasswordFile string
	// TLSCAFile is a PEM CA bundle the server certificate of a rediss://
	// URL is verified against (default: the system roots).
	TLSCAFile string
	// Client, when set, is used instead of URL (and not closed by Close).
	Client redis.UniversalClient
	// Timeout bounds every Redis call, and the wait for a free worker;
	// default 50ms. A caller waits at most about twice Timeout.
	Timeout time.Duration
	// MaxBatch bounds the keys of one script call; default 512.
	MaxBatch int
	// Workers is the number of script calls in flight at once; default 4.
	Workers int
	// QueueSize bounds requests waiting for a worker; default 4096.
	QueueSize int
	// CacheSize bounds the over-limit cache (keys); 0 means default,
	// negative disables the cache.
	CacheSize int
	Log       *slog.Logger
	Metrics   *ratelimit.Metrics
}

// Store is the Redis backend. It implements ratelimit.Backend.
type Store struct {
	client  redis.UniversalClient
	owned   bool
	cluster bool
	o       Options
	log     *slog.Logger
	queue   chan *job
	wg      sync.WaitGroup
	stop    chan struct{}
	once    sync.Once
	// stopWarm ends the start-up script load (warm); warmed is closed
	// when it has finished, loaded or not.
	stopWarm context.CancelFunc
	warmed   chan struct{}
	cache    *overCache
	jobs     sync.Pool
}

type job struct {
	now  time.Time
	hits []ratelimit.Hit
	out  []ratelimit.Result
	idx  []int // positions in the caller's hits (those not answered by the cache)
	enq  time.Time
	err  error
	done chan struct{}
}

// ParseURL turns a --redis-url into go-redis options (see Options.URL).
func ParseURL(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// A *url.Error prints the whole URL, password included: keep
		// only the reason.
		// A *url.Error prints the whole URL, password included, and an
		// EscapeError the bad escape, which may be in the password:
		// keep only the kind of problem.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var ee url.EscapeError
		if errors.As(err, &ee) {
			err = errors.New("invalid %-escape")
		}
		return nil, fmt.Errorf("redis url %s: %w", Redact(raw), err)
	}
	o := &redis.UniversalOptions{}
	if scheme, ok := strings.CutPrefix(u.Scheme, "rediss"); ok && (scheme == "" || scheme[0] == '+') {
		u.Scheme = "redis" + scheme
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if h := strings.Split(u.Host, ","); len(h) == 1 {
			o.TLSConfig.ServerName = u.Hostname()
		}
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	hosts := strings.Split(u.Host, ",")
	for _, h := range hosts {
		if h == "" {
			return nil, fmt.Errorf("redis url %s: empty host", Redact(raw))
		}
		if !strings.Contains(h, ":") {
			h += ":6379"
		}
		o.Addrs = append(o.Addrs, h)
	}
	path := strings.Trim(u.Path, "/")
	parts := []string{}
	if path != "" {
		parts = strings.Split(path, "/")
	}
	db := func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("redis url %s: database %q is not a number", Redact(raw), s)
		}
		o.DB = n
		return nil
	}
	switch u.Scheme {
	case "redis":
		if len(hosts) != 1 {
			return nil, fmt.Errorf("redis url %s: redis:// takes one host; use redis+cluster:// or redis+sentinel:// for several", Redact(raw))
		}
		if len(parts) > 1 {
			return nil, fmt.Errorf("redis url %s: path must be /db", Redact(raw))
		}
		if len(parts) == 1 {
			if err := db(parts[0]); err != nil {
				return nil, err
			}
		}
	case "redis+sentinel":
		if len(parts) == 0 || len(parts) > 2 {
			return nil, fmt.Errorf("redis url %s: want redis+sentinel://host:port[,host:port]/master[/db]", Redact(raw))
		}
		o.MasterName = parts[0]
		o.SentinelPassword = o.Password
		if len(parts) == 2 {
			if err := db(parts[1]); err != nil {
				return nil, err
			}
		}
	case "redis+cluster":
		if len(parts) > 0 {
			return nil, fmt.Errorf("redis url %s: a cluster has no database path", Redact(raw))
		}
		o.IsClusterMode = true
	default:
		return nil, fmt.Errorf("redis url %s: scheme %q: want redis, redis+sentinel or redis+cluster (rediss... for TLS)", Redact(raw), u.Scheme)
	}
	return o, nil
}

// applySecrets sets the AUTH password from o.PasswordFile and the CA of
// a TLS URL from o.TLSCAFile. Errors name the file, never its content.
func applySecrets(uo *redis.UniversalOptions, o Options) error {
	if o.PasswordFile != "" {
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return fmt.Errorf("redis password file: %w", err)
		}
		p := strings.TrimRight(string(b), "\r\n")
		if p == "" {
			return fmt.Errorf("redis password file %s is empty", o.PasswordFile)
		}
		uo.Password = p
		if uo.MasterName != "" && uo.SentinelPassword == "" {
			uo.SentinelPassword = p
		}
	}
	if o.TLSCAFile != "" {
		if uo.TLSConfig == nil {
			return fmt.Errorf("redis CA file %s given for a URL without TLS: use rediss://", o.TLSCAFile)
		}
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return fmt.Errorf("redis CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("redis CA file %s: no PEM certificate found", o.TLSCAFile)
		}
		uo.TLSConfig.RootCAs = pool
	}
	return nil
}

// Redact masks the password of a redis URL for logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if err != nil {
			return "<unparsable redis url>"
		}
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// New connects (lazily: the first call dials) and starts the workers.
func New(o Options) (*Store, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	s := &Store{o: o, log: o.Log, client: o.Client, queue: make(chan *job, o.QueueSize), stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.client == nil {
		uo, err := ParseURL(o.URL)
		if err != nil {
			return nil, err
		}
		if err := applySecrets(uo, o); err != nil {
			return nil, err
		}
		uo.ContextTimeoutEnabled = true
		uo.DialTimeout = max(o.Timeout, 100*time.Millisecond)
		uo.ReadTimeout, uo.WriteTimeout = o.Timeout, o.Timeout
		uo.PoolTimeout = o.Timeout
		uo.MaxRetries = -1
		uo.PoolSize = o.Workers * 2
		uo.MinIdleConns = 0
		s.client = redis.NewUniversalClient(uo)
		s.owned = true
	}
	_, s.cluster = s.client.(*redis.ClusterClient)
	if o.CacheSize > 0 {
		s.cache = newOverCache(o.CacheSize)
	}
	s.jobs.New = func() any { return &job{done: make(chan struct{}, 1)} }
	for i := 0; i < o.Workers; i++ {
		s.wg.Add(1)
		go s.worker()
	}
	var warmCtx context.Context
	warmCtx, s.stopWarm = context.WithCancel(context.Background())
	s.warmed = make(chan struct{})
	if s.cluster {
		// A cluster client learns the slot map on its first command; a
		// script load racing the cluster's own start-up made the first
		// decisions inexact in TestCluster. Clusters load the script on
		// NOSCRIPT (exec), as before.
		close(s.warmed)
	} else {
		s.wg.Add(1)
		go s.warm(warmCtx)
	}
	return s, nil
}

// Client is the underlying go-redis client.
func (s *Store) Client() redis.UniversalClient { return s.client }

// warm loads the decision script once at start, with a budget of its
// own (seconds, not the per-decision Timeout), so the first decisions do
// not pay a SCRIPT LOAD (and a fresh TLS connection) inside their budget
// and fall to the failure mode. It retries for about a minute while Redis
// is not up yet; a Redis restart later is handled by exec (NOSCRIPT).
func (s *Store) warm(ctx context.Context) {
	defer s.wg.Done()
	defer close(s.warmed)
	for try := 0; try < 30; try++ {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := decideScript.Load(lctx, s.client).Err()
		cancel()
		if err == nil {
			return
		}
		s.log.Debug("redis: loading the decision script at start failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// Ping checks Redis answers, for readiness.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(s.o.Timeout, 100*time.Millisecond))
	defer cancel()
	return s.client.Ping(ctx).Err()
}

// Close stops the workers (requests still queued fail) and closes the
// client if the Store made it.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.stopWarm()
		close(s.stop)
		s.wg.Wait()
		if s.owned {
			err = s.client.Close()
		}
	})
	return err
}

// Decide implements ratelimit.Backend.
func (s *Store) Decide(ctx context.Context, now time.Time, hits []ratelimit.Hit, out []ratelimit.Result) error {
	j := s.jobs.Get().(*job)
	j.now, j.hits, j.out, j.err = now, j.hits[:0], j.out[:0], nil
	j.idx = j.idx[:0]
	nowMs := now.UnixMilli()
	for i := range hits {
		h := &hits[i]
		if s.cache != nil && h.Limit.Algorithm == ratelimit.FixedWindow && h.Addend > 0 {
			if s.cache.over(h.Key, nowMs) {
				out[i] = ratelimit.Result{Over: true, Used: uint64(h.Limit.Requests) + h.Addend, FromCache: true,
					ResetMillis: h.Limit.WindowMillis() - nowMs%h.Limit.WindowMillis()}
				continue
			}
		}
		j.hits = append(j.hits, *h)
		j.idx = append(j.idx, i)
	}
	if len(j.hits) == 0 {
		s.jobs.Put(j)
		return nil
	}
	if cap(j.out) < len(j.hits) {
		j.out = make([]ratelimit.Result, len(j.hits))
	} else {
		j.out = j.out[:len(j.hits)]
		clear(j.out)
	}
	j.enq = time.Now()
	select {
	case s.queue <- j:
	default:
		s.jobs.Put(j)
		return ErrQueueFull
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		// The worker still owns j; it is dropped, not pooled.
		return fmt.Errorf("redis backend: %w", ctx.Err())
	}
	if j.err != nil {
		err := j.err
		s.jobs.Put(j)
		return err
	}
	for k, i := range j.idx {
		out[i] = j.out[k]
		if s.cache != nil && out[i].Over && hits[i].Limit.Algorithm == ratelimit.FixedWindow {
			s.cache.add(hits[i].Key, nowMs+out[i].ResetMillis, nowMs)
		}
	}
	s.jobs.Put(j)
	return nil
}

func (s *Store) worker() {
	defer s.wg.Done()
	batch := make([]*job, 0, 64)
	for {
		var first *job
		select {
		case first = <-s.queue:
		case <-s.stop:
			for {
				select {
				case j := <-s.queue:
					j.err = errors.New("redis backend: closed")
					j.done <- struct{}{}
				default:
					return
				}
			}
		}
		// A caller waits at most about twice the timeout: a job that
		// waited in the queue for longer than the timeout is failed
		// without touching Redis, and a Redis call gets the timeout.
		now := time.Now()
		batch = batch[:0]
		keys := 0
		take := func(j *job) {
			if now.Sub(j.enq) > s.o.Timeout {
				j.err = fmt.Errorf("redis backend: waited %s for a connection, over the %s deadline: %w", now.Sub(j.enq).Round(time.Millisecond), s.o.Timeout, context.DeadlineExceeded)
				j.done <- struct{}{}
				return
			}
			batch = append(batch, j)
			keys += len(j.hits)
		}
		take(first)
	drain:
		for keys < s.o.MaxBatch {
			select {
			case j := <-s.queue:
				take(j)
			default:
				break drain
			}
		}
		if len(batch) == 0 {
			continue
		}
		s.run(batch, keys)
		for _, j := range batch {
			j.done <- struct{}{}
		}
	}
}

// call is one script invocation: its keys and args, and where each key's
// result goes.
type call struct {
	keys []string
	args []any
	dst  []*ratelimit.Result
}

func (c *call) add(h *ratelimit.Hit, dst *ratelimit.Result) {
	alg := "f"
	switch h.Limit.Algorithm {
	case ratelimit.SlidingWindow:
		alg = "s"
	case ratelimit.TokenBucket:
		alg = "t"
	}
	c.keys = append(c.keys, h.Key)
	c.args = append(c.args, alg, h.Addend, h.Limit.Requests, h.Limit.WindowMillis(), h.Limit.Capacity())
	c.dst = append(c.dst, dst)
}

func (s *Store) run(batch []*job, keys int) {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	start := time.Now()
	// One instant for the batch: the latest of its requests' clocks.
	now := batch[0].now
	for _, j := range batch[1:] {
		if j.now.After(now) {
			now = j.now
		}
	}
	nowArg := now.UnixMicro()
	var calls []*call
	if s.cluster {
		bySlot := map[int]*call{}
		for _, j := range batch {
			for i := range j.hits {
				sl := slot(j.hits[i].Key)
				c := bySlot[sl]
				if c == nil {
					c = &call{args: []any{nowArg}}
					bySlot[sl] = c
					calls = append(calls, c)
				}
				c.add(&j.hits[i], &j.out[i])
			}
		}
	} else {
		c := &call{keys: make([]string, 0, keys), args: make([]any, 1, 1+keys*5), dst: make([]*ratelimit.Result, 0, keys)}
		c.args[0] = nowArg
		for _, j := range batch {
			for i := range j.hits {
				c.add(&j.hits[i], &j.out[i])
			}
		}
		calls = []*call{c}
	}
	err := s.exec(ctx, calls)
	if err != nil {
		err = fmt.Errorf("redis backend: deciding %d keys in %s: %w", keys, time.Since(start).Round(time.Microsecond), err)
		for _, j := range batch {
			j.err = err
		}
	}
	// Latency and errors are recorded per request by the Service; the
	// store adds how many keys each round trip carried.
	s.o.Metrics.ObserveBatch("redis", keys)
}

// exec runs the calls in one round trip per node: EVALSHA, and on NOSCRIPT
// (a restarted or new server) load the script and retry once.
func (s *Store) exec(ctx context.Context, calls []*call) error {
	for attempt := 0; ; attempt++ {
		var cmds []*redis.Cmd
		var err error
		if len(calls) == 1 {
			cmd := decideScript.EvalSha(ctx, s.client, calls[0].keys, calls[0].args...)
			cmds, err = []*redis.Cmd{cmd}, cmd.Err()
		} else {
			pipe := s.client.Pipeline()
			for _, c := range calls {
				cmds = append(cmds, decideScript.EvalSha(ctx, pipe, c.keys, c.args...))
			}
			_, err = pipe.Exec(ctx)
		}
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
			if lerr := decideScript.Load(ctx, s.client).Err(); lerr != nil {
				return fmt.Errorf("loading script: %w", lerr)
			}
			continue
		}
		if err != nil {
			return err
		}
		for i, c := range calls {
			vals, err := cmds[i].Int64Slice()
			if err != nil {
				return fmt.Errorf("script reply: %w", err)
			}
			if len(vals) != 3*len(c.dst) {
				return fmt.Errorf("script reply has %d values for %d keys", len(vals), len(c.dst))
			}
			for k, dst := range c.dst {
				used, over, reset := vals[3*k], vals[3*k+1], vals[3*k+2]
				r := ratelimit.Result{Used: uint64(max(used, 0)), Over: over == 1, ResetMillis: reset}
				if c.args[1+5*k] == "t" {
					r.ResetMillis = (reset + 999) / 1000
				}
				*dst = r
			}
		}
		return nil
	}
}

// Timeout is the deadline of every Redis call.
func (s *Store) Timeout() time.Duration { return s.o.Timeout }
