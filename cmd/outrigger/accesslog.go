package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/outrigger-mesh/outrigger/proxy"
)

// Access logs: one JSON line per HTTP request, written by a proxy.Observer.
// The request's goroutine formats its line into a pooled buffer and hands
// it to a bounded channel without blocking; one writer goroutine (owned by
// the process's control plane, so it outlives the data plane's drain)
// writes the lines through a buffer, flushing whenever the channel runs
// empty. When the channel is full the line is dropped and counted: a slow
// disk must never slow requests. SIGHUP reopens a file (for log rotation).

// AccessLogConfig is the top-level access_log block; without it there is no
// access log.
type AccessLogConfig struct {
	// Path is "stdout", "stderr" or a file, appended to (relative paths
	// are taken from the config file's directory).
	Path string `yaml:"path" json:"path"`
	// Sample is the share of requests logged, 0..1; default 1.
	Sample *float64 `yaml:"sample" json:"sample"`
}

// accessLogQueue is how many lines may wait for the writer; past it,
// lines are dropped.
const accessLogQueue = 4096

func (a *AccessLogConfig) setDefaults() {
	if a.Sample == nil {
		a.Sample = ptr(1.0)
	}
}

// validateAccessLog checks the access_log block: a path, a sample in
// range, and for a file, a directory that exists.
func (c *Config) validateAccessLog(add func(string, string, ...any)) {
	a := c.AccessLog
	if a == nil {
		return
	}
	switch a.Path {
	case "":
		add("access_log.path", "required: stdout, stderr or a file to append to")
	case "stdout", "stderr":
	default:
		dir := filepath.Dir(c.resolve(a.Path))
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			add("access_log.path", "directory %s does not exist (relative paths are taken from the config file's directory)", dir)
		}
	}
	if s := a.Sample; s != nil && !(*s >= 0 && *s <= 1) {
		add("access_log.sample", "%v is outside 0..1 (the share of requests logged)", *s)
	}
}

// accessLog is the access log Observer and its writer. A reload that keeps
// the block applies a new sample at once (an atomic the request's
// goroutine reads) and a new path through the writer, which switches
// files between two lines (see retarget).
type accessLog struct {
	sample atomic.Uint64 // math.Float64bits of the share of requests logged
	log    *slog.Logger
	lines  chan *[]byte
	reopen chan struct{}  // capacity 1: SIGHUP asks the writer to reopen
	swap   chan accessOut // retarget hands the writer a new output
	done   chan struct{}  // closed when run returns
	cur    string         // the path retarget last set; the control goroutine's

	dropped atomic.Uint64 // lines not written because the queue was full

	// owned by run once it starts; set by newAccessLog
	path string         // "stdout", "stderr" or the resolved file path
	out  io.WriteCloser // open on path
}

// accessOut is an opened output and its path.
type accessOut struct {
	out  io.WriteCloser
	path string
}

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// newAccessLog opens the configured output; nil without access_log.
func newAccessLog(cfg *Config, log *slog.Logger) (*accessLog, error) {
	a := cfg.AccessLog
	if a == nil {
		return nil, nil
	}
	l := &accessLog{
		log:    log.With("component", "access_log"),
		lines:  make(chan *[]byte, accessLogQueue),
		reopen: make(chan struct{}, 1),
		swap:   make(chan accessOut),
		done:   make(chan struct{}),
	}
	l.setSample(*a.Sample)
	o, err := openAccessLog(accessLogPath(cfg))
	if err != nil {
		return nil, err
	}
	l.path, l.out, l.cur = o.path, o.out, o.path
	return l, nil
}

// accessLogPath is cfg's access log path, a file's resolved against the
// config file's directory.
func accessLogPath(cfg *Config) string {
	p := cfg.AccessLog.Path
	if p != "stdout" && p != "stderr" {
		p = cfg.resolve(p)
	}
	return p
}

func (l *accessLog) setSample(s float64) { l.sample.Store(math.Float64bits(s)) }

// prepareRetarget opens cfg's path when it is not the one written now;
// the zero accessOut when it is. A reload calls it before anything is
// committed, so a path that cannot be opened fails the reload and the old
// file stays.
func (l *accessLog) prepareRetarget(cfg *Config) (accessOut, error) {
	p := accessLogPath(cfg)
	if p == l.cur {
		return accessOut{}, nil
	}
	return openAccessLog(p)
}

// retarget hands o to the writer, which flushes, closes the old output
// and writes on to o; a writer that has stopped closes nothing, so o is
// closed here. The zero o does nothing.
func (l *accessLog) retarget(o accessOut) {
	if o.out == nil {
		return
	}
	l.cur = o.path
	select {
	case l.swap <- o:
	case <-l.done:
		o.out.Close()
	}
}

// nopCloser keeps the writer from closing stdout and stderr.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// openAccessLog opens path ("stdout", "stderr" or a file, appended to).
func openAccessLog(path string) (accessOut, error) {
	switch path {
	case "stdout":
		return accessOut{nopCloser{os.Stdout}, path}, nil
	case "stderr":
		return accessOut{nopCloser{os.Stderr}, path}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return accessOut{}, fmt.Errorf("access_log: %w", err)
	}
	return accessOut{f, path}, nil
}

// ObserveRequest formats r and queues the line; it never blocks.
func (l *accessLog) ObserveRequest(r *proxy.RequestRecord) {
	if sample := math.Float64frombits(l.sample.Load()); sample < 1 && (sample <= 0 || rand.Float64() >= sample) {
		return
	}
	bp := linePool.Get().(*[]byte)
	*bp = appendAccessLine((*bp)[:0], r)
	select {
	case l.lines <- bp:
	default:
		l.dropped.Add(1)
		linePool.Put(bp)
	}
}

// Dropped is the number of lines dropped because the queue was full.
func (l *accessLog) Dropped() uint64 { return l.dropped.Load() }

// Reopen asks the writer to reopen its file (after log rotation moved it).
// It does not block; nil-safe.
func (l *accessLog) Reopen() {
	if l == nil {
		return
	}
	select {
	case l.reopen <- struct{}{}:
	default:
	}
}

// run writes queued lines until ctx ends, then writes what is still
// queued, flushes and closes the output.
func (l *accessLog) run(ctx context.Context) {
	defer close(l.done)
	bw := bufio.NewWriterSize(l.out, 64<<10)
	write := func(bp *[]byte) {
		bw.Write(*bp)
		if cap(*bp) <= 64<<10 { // a huge line's buffer is not kept
			linePool.Put(bp)
		}
	}
	report := time.NewTicker(10 * time.Second)
	defer report.Stop()
	var reported uint64
	for {
		select {
		case bp := <-l.lines:
			write(bp)
			if len(l.lines) == 0 {
				l.flush(bw)
			}
		case <-l.reopen:
			l.flush(bw)
			o, err := openAccessLog(l.path)
			if err != nil {
				l.log.Warn("access log not reopened; writing on to the open file", "err", err)
				continue
			}
			l.out.Close()
			l.out = o.out
			bw.Reset(o.out)
			l.log.Info("access log reopened", "path", l.path)
		case o := <-l.swap:
			// Lines still queued go to the new output: the reload returns
			// once the swap is taken, and a line queued after that must
			// not land in the old file.
			l.flush(bw)
			l.out.Close()
			l.path, l.out = o.path, o.out
			bw.Reset(o.out)
			l.log.Info("access log now written to a new path", "path", l.path)
		case <-report.C:
			if d := l.dropped.Load(); d != reported {
				l.log.Warn("access log lines dropped: the writer falls behind", "dropped_total", d, "since_last", d-reported)
				reported = d
			}
		case <-ctx.Done():
			for len(l.lines) > 0 {
				write(<-l.lines)
			}
			l.flush(bw)
			if err := l.out.Close(); err != nil {
				l.log.Warn("access log close", "err", err)
			}
			return
		}
	}
}

func (l *accessLog) flush(bw *bufio.Writer) {
	if err := bw.Flush(); err != nil {
		// Keep going: the next flush retries on a fresh buffer.
		bw.Reset(l.out)
		l.log.Warn("access log write failed; lines lost", "err", err)
	}
}

// appendAccessLine appends r as one JSON object and a newline. Every field
// is always present, so the lines have one shape; trace_id is "" with
// tracing off.
func appendAccessLine(b []byte, r *proxy.RequestRecord) []byte {
	b = append(b, `{"time":"`...)
	b = r.Start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, `","duration_ms":`...)
	b = strconv.AppendFloat(b, float64(r.Duration.Microseconds())/1000, 'f', -1, 64)
	b = appendField(b, "method", r.Method)
	b = appendField(b, "authority", r.Authority)
	b = appendField(b, "path", r.Path)
	b = appendField(b, "protocol", r.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, `,"upstream":"`...)
	if r.Endpoint.IsValid() {
		b = r.Endpoint.AppendTo(b)
	}
	b = append(b, `","attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, `,"retries":`...)
	b = strconv.AppendInt(b, int64(r.Retries), 10)
	b = appendField(b, "route", r.Route)
	b = appendField(b, "service", r.Service)
	b = appendField(b, "listener", r.Listener)
	b = appendField(b, "client", r.Client)
	b = appendField(b, "cause", r.Cause)
	b = append(b, `,"trace_id":"`...)
	if r.TraceID.IsValid() {
		b = hex.AppendEncode(b, r.TraceID[:])
	}
	return append(b, "\"}\n"...)
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendJSONString(b, v)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}

// proxyOptions are the Options of every listener the process builds: its
// logger, its tracer provider and propagator (nil with tracing off),
// metrics as request and connection observer and, with access logs on, the
// access log as another request observer with the request details it
// needs.
func (p *process) proxyOptions() proxy.Options {
	o := proxy.Options{Logger: p.log.With("component", "proxy"),
		TracerProvider: p.tracing.TracerProvider(), Propagator: p.tracing.propagator}
	var obs []proxy.Observer
	if p.metrics != nil {
		obs = append(obs, p.metrics)
		o.TCPObserver = p.metrics
	}
	if p.access != nil { // a nil *accessLog in the list would not be a nil Observer
		obs = append(obs, p.access)
		o.ObserveDetail = true
	}
	o.Observer = observers(obs...)
	return o
}

// startAccessLog runs the access log writer under the control plane, which
// stops only after the data plane drained. Nil-safe.
func (p *process) startAccessLog() {
	if p.access == nil {
		return
	}
	ctx := p.ctrlCtx
	p.ctrl.Go(func() { p.access.run(ctx) })
}
