package testenv

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Admiral-Piett/goaws/app/gosqs"
	"github.com/Admiral-Piett/goaws/app/models"
	"github.com/Admiral-Piett/goaws/app/router"
	"github.com/sirupsen/logrus"
)

// GoAWS is goaws v0.5.4 (an SQS emulator) served in-process through its
// own router on a 127.0.0.1 port: the released binary binds 0.0.0.0, and
// this way nothing listens beyond loopback. goaws keeps its queues in
// package globals, so one GoAWS runs per test binary at a time; StartGoAWS
// serialises callers and clears the queues.
type GoAWS struct {
	Endpoint string // http://127.0.0.1:PORT
	Port     int

	mu   sync.Mutex
	srv  *http.Server
	done chan struct{}
}

var (
	goawsMu       sync.Mutex // one GoAWS per process: goaws state is global
	goawsTaskOnce sync.Once
)

// StartGoAWS serves goaws on a free loopback port until the test ends.
func StartGoAWS(t testing.TB) *GoAWS {
	t.Helper()
	// Another test of this binary may hold goaws; wait for it (bounded),
	// and fail rather than hang if one test starts two.
	for deadline := time.Now().Add(2 * time.Minute); !goawsMu.TryLock(); {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: goaws is still in use by another test after 2m (one GoAWS per test binary at a time; a test cannot start two)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	logrus.SetLevel(logrus.WarnLevel)
	g := &GoAWS{Port: FreePort(t)}
	g.Endpoint = "http://127.0.0.1:" + strconv.Itoa(g.Port)
	models.SyncQueues.Lock()
	models.SyncQueues.Queues = map[string]*models.Queue{}
	models.SyncQueues.Unlock()
	models.CurrentEnvironment.Host = "127.0.0.1"
	models.CurrentEnvironment.Port = strconv.Itoa(g.Port)
	models.CurrentEnvironment.Region = ""
	models.CurrentEnvironment.AccountID = "000000000000"
	models.CurrentEnvironment.QueueAttributeDefaults.VisibilityTimeout = 30
	models.CurrentEnvironment.QueueAttributeDefaults.MaximumMessageSize = 262144
	models.CurrentEnvironment.QueueAttributeDefaults.MessageRetentionPeriod = 345600
	// goaws' visibility-timeout sweep; it runs for the life of the test binary.
	goawsTaskOnce.Do(func() { go gosqs.PeriodicTasks(200*time.Millisecond, make(chan bool)) })
	if err := g.serve(); err != nil {
		goawsMu.Unlock()
		t.Fatalf("testenv: starting goaws on %s: %v", g.Endpoint, err)
	}
	t.Cleanup(func() {
		g.Stop()
		goawsMu.Unlock()
	})
	return g
}

func (g *GoAWS) serve() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.srv != nil {
		return nil
	}
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after Stop
		if l, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(g.Port)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: serialised(router.New()), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logrus.Errorf("goaws: %v", err)
		}
	}()
	g.srv, g.done = srv, done
	return nil
}

// Stop closes the listener and every connection, as an outage would; the
// queues and their messages stay in memory for Restart.
func (g *GoAWS) Stop() {
	g.mu.Lock()
	srv, done := g.srv, g.done
	g.srv = nil
	g.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = srv.Close()
	<-done
}

// Restart serves again on the same port after Stop.
func (g *GoAWS) Restart(t testing.TB) {
	t.Helper()
	if err := g.serve(); err != nil {
		t.Fatalf("testenv: restarting goaws on %s: %v", g.Endpoint, err)
	}
}

// goawsCalls serialises goaws' handlers: goaws keeps its queues in package
// state that some handlers touch unlocked (two CreateQueue calls at once,
// from a broker and a worker starting together, race). ReceiveMessage is
// left concurrent: it long-polls, and holding the lock there would stall
// every other call for its wait time.
var goawsCalls sync.Mutex

func serialised(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".ReceiveMessage") && r.URL.Query().Get("Action") != "ReceiveMessage" {
			goawsCalls.Lock()
			defer goawsCalls.Unlock()
			h.ServeHTTP(w, r)
			return
		}
		rec := &recordingWriter{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		countReceives(rec.body.Bytes())
	})
}

// recordingWriter passes a response through and keeps a copy of its body.
type recordingWriter struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

var receiptHandle = regexp.MustCompile(`"ReceiptHandle"\s*:\s*"([^"]+)"|<ReceiptHandle>([^<]+)</ReceiptHandle>`)

// countReceives does what goaws v0.5.4 leaves out: it never increments a
// message's receive count, so ApproximateReceiveCount reads "1" on every
// delivery, a crash redelivery included. Real SQS counts every receive;
// after each ReceiveMessage this counts the messages it returned (goaws
// sets a new receipt handle per receive, so the handle names the
// delivery), and the next delivery of a message reads 2, 3, ...
func countReceives(body []byte) {
	handles := map[string]bool{}
	for _, m := range receiptHandle.FindAllSubmatch(body, -1) {
		handles[string(m[1])+string(m[2])] = true
	}
	if len(handles) == 0 {
		return
	}
	models.SyncQueues.Lock()
	defer models.SyncQueues.Unlock()
	for _, q := range models.SyncQueues.Queues {
		for i := range q.Messages {
			if handles[q.Messages[i].ReceiptHandle] {
				q.Messages[i].NumberOfReceives++
			}
		}
	}
}
