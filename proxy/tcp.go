package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/outrigger-mesh/outrigger/balancer"
	"github.com/outrigger-mesh/outrigger/discovery"
)

// Upstream chooses where a connection goes; *balancer.Balancer satisfies it.
//
// Pick is called from every connection's goroutine concurrently, once per
// connect attempt, with a PickInfo naming the endpoints this connection
// already failed to dial. It must not block: it answers from what it knows
// now, and returns balancer.ErrNoEndpoints (or any error) when there is
// nowhere to go, upon which the client connection is closed. The caller calls
// PickResult.Done exactly once for every pick that returned no error.
type Upstream interface {
	Pick(info *balancer.PickInfo) (balancer.PickResult, error)
}

// StaticUpstream is an Upstream with one fixed endpoint, named name; inbound
// listeners forward to the local application with it. It keeps no state:
// Done is a no-op, and it picks addr again even when addr was tried (it has
// no other endpoint), so inbound listeners usually set ConnectAttempts to 1.
func StaticUpstream(name string, addr netip.AddrPort) Upstream {
	return &staticUpstream{ep: discovery.Endpoint{
		ID:     name,
		Addr:   addr,
		Weight: discovery.DefaultWeight,
		State:  discovery.StateReady,
		Source: "static",
	}}
}

type staticUpstream struct{ ep discovery.Endpoint }

func (s *staticUpstream) Pick(*balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{Endpoint: &s.ep, Done: staticDone}, nil
}

// Service returns the name StaticUpstream was given, for ConnRecord.
func (s *staticUpstream) Service() string { return s.ep.ID }

// serviceOf names up's service for ConnRecord: its Service method when it
// has one (*balancer.Balancer, StaticUpstream), else "".
func serviceOf(up Upstream) string {
	if s, ok := up.(interface{ Service() string }); ok {
		return s.Service()
	}
	return ""
}

func staticDone(balancer.DoneInfo) {}

// Defaults for TCPConfig's zero fields.
const (
	DefaultConnectTimeout  = 5 * time.Second
	DefaultIdleTimeout     = time.Hour
	DefaultConnectAttempts = 3
	// MaxConnectAttempts bounds ConnectAttempts: a PickInfo remembers
	// balancer.MaxTried failed endpoints, so the attempt after that is the
	// last one still guaranteed to avoid every endpoint that failed before.
	MaxConnectAttempts = balancer.MaxTried + 1
)

// TCPConfig is one L4 listener.
type TCPConfig struct {
	// Name identifies the listener in logs, errors and Server.Addrs.
	Name string
	// Listen is the host:port to bind; port 0 picks a free port.
	Listen string
	// ConnectTimeout bounds one dial to an endpoint; 0 means
	// DefaultConnectTimeout (5s).
	ConnectTimeout time.Duration
	// IdleTimeout closes a connection on which no byte moved in either
	// direction for this long; 0 means DefaultIdleTimeout (1h). There is no
	// "never": use a long duration. Steady traffic in one direction keeps the
	// whole connection open. The connection is closed between IdleTimeout and
	// 1.25×IdleTimeout after its last byte. A write stuck on a peer that
	// reads nothing counts as no movement: such a connection is closed about
	// IdleTimeout after the other direction found it idle.
	IdleTimeout time.Duration
	// ConnectAttempts is how many endpoints a connection tries, one after the
	// other, when dialing fails (retrying is safe then: nothing was sent);
	// 0 means DefaultConnectAttempts (3), at most MaxConnectAttempts.
	ConnectAttempts int
}

// withDefaults returns c with zero fields set to their defaults.
func (c TCPConfig) withDefaults() TCPConfig {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ConnectAttempts == 0 {
		c.ConnectAttempts = DefaultConnectAttempts
	}
	return c
}

// Validate reports every problem with c, joined; zero fields are valid and
// mean their defaults.
func (c TCPConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("listener has no name"))
	}
	if err := validateListen(c.Listen); err != nil {
		errs = append(errs, err)
	}
	if c.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("connect timeout %v is negative", c.ConnectTimeout))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("idle timeout %v is negative", c.IdleTimeout))
	}
	if c.ConnectAttempts < 0 || c.ConnectAttempts > MaxConnectAttempts {
		errs = append(errs, fmt.Errorf("connect attempts %d out of range 1..%d (0 means %d)",
			c.ConnectAttempts, MaxConnectAttempts, DefaultConnectAttempts))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("listener %q: %w", c.Name, err)
	}
	return nil
}

// validateListen checks a listener's host:port.
func validateListen(listen string) error {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen %q: %w", listen, err)
	}
	var errs []error
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: port %q is not a number in 0..65535", listen, port))
	}
	if _, err := netip.ParseAddr(host); err != nil && host != "" && host != "localhost" {
		errs = append(errs, fmt.Errorf("listen %q: host %q is not an IP address", listen, host))
	}
	return errors.Join(errs...)
}

// Options are a listener's or server's dependencies.
type Options struct {
	// Logger receives the proxy's logs; nil discards them. Per-connection
	// events log at debug; failures that affect many connections log at warn,
	// at most once per logEvery for each kind and listener.
	Logger *slog.Logger

	// Observer, when set, sees every HTTP request an HTTPListener
	// answered (see RequestRecord); nil costs nothing. ObserveDetail
	// also fills the record's Authority, Path and Client, which costs
	// a copy per request (access logs want them, metrics do not).
	Observer      Observer
	ObserveDetail bool

	// TracerProvider, when set, traces requests and connections (see
	// trace.go): a server span per HTTP request, a client span per
	// upstream attempt, a span per TCP connection. nil turns tracing off
	// and costs nothing. Propagator reads the parent context from request
	// fields and writes the attempt's context upstream; nil means W3C
	// trace context and baggage. The fast path writes traceparent,
	// tracestate and b3 itself when Propagator.Fields names them, and
	// passes baggage through. Propagator.Extract is called only for a
	// request that carries a field one of W3C trace context, baggage or
	// B3 reads (traceparent, tracestate, baggage, b3, x-b3-*): the
	// propagators cmd/outrigger offers read no others.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// TCPObserver, when set, sees every connection an L4 listener (or a
	// front listener's TCP fallback) forwards; nil costs nothing.
	TCPObserver TCPObserver
}

// TCPObserver sees the connections L4 forwarding carries (see ConnRecord).
// Both methods run on the connection's own goroutine, so they must be fast
// and must not block; r is valid only during the call, and is the same
// record for both calls of one connection. ConnClosed is called exactly
// once after each ConnOpened.
type TCPObserver interface {
	// ConnOpened: the connection was accepted for forwarding and is about
	// to pick an endpoint (a front listener's connection once it is known
	// not to be HTTP). Endpoint is not set yet.
	ConnOpened(r *ConnRecord)
	// ConnClosed: both sockets are closed (or the connection found no
	// endpoint: Reason "no_upstream"). Bytes and Duration are final.
	ConnClosed(r *ConnRecord)
}

// ConnRecord is one L4 connection as the proxy saw it. The proxy owns it;
// its strings are the listener's own (never connection buffers).
type ConnRecord struct {
	Listener string // the listener's name
	// Service names the listener's upstream: the balancer's service, or
	// the name given to StaticUpstream (an inbound listener's name).
	Service string
	// Endpoint is the endpoint the connection was dialed to; zero when
	// none was reached.
	Endpoint netip.AddrPort
	// Received counts bytes from the client sent on to the endpoint
	// (a sniffed prefix included); Sent counts bytes from the endpoint
	// written to the client. Final in ConnClosed, 0 in ConnOpened.
	Received, Sent int64
	// Reason says why the connection ended: "eof" (both directions
	// finished), "idle", "drain", "error", or "no_upstream" (no endpoint
	// could be picked or dialed). "" in ConnOpened.
	Reason   string
	Start    time.Time // when the connection was accepted
	Duration time.Duration
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// keepAlive is set on both sockets of every connection, so that a peer that
// vanished without a FIN or RST (a crashed host, a dropped NAT entry) is
// noticed even on a connection that is idle by design.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 6}

// TCPListener is one L4 listener: its config, its upstream, and once a
// Server bound it, its socket. Create it with NewTCPListener and hand it to
// exactly one Server.
//
// Update replaces the config and upstream for connections accepted after
// it; a connection keeps the generation it was accepted with (its endpoint,
// dialer and idle timeout) until it closes.
type TCPListener struct {
	// set at construction
	cfg     TCPConfig // with defaults
	raw     TCPConfig // as given, for Validate
	up      Upstream
	service string // serviceOf(up), for ConnRecord
	log     *slog.Logger
	obs     TCPObserver // nil: none
	dialer  net.Dialer
	tr      *tracing // nil: tracing is off (trace_tcp.go)

	// set by Server.Listen (or Server.Apply) before the accept loop starts
	ln *net.TCPListener

	// next is the generation made by the latest Update, nil before any: a
	// *TCPListener of its own (never bound) whose cfg, up and dialer new
	// connections use. Only the listener the Server owns has one.
	next atomic.Pointer[TCPListener]

	// set at construction when this is a FrontListener's socket: its
	// connections run front.first before they are forwarded
	front *FrontListener

	// rate limits for warnings
	noEndpointsLog, connectLog, acceptLog logLimiter
}

// NewTCPListener returns a listener for cfg that forwards to up. It does not
// bind; Server.Listen validates cfg and binds.
func NewTCPListener(cfg TCPConfig, up Upstream, opts Options) *TCPListener {
	d := cfg.withDefaults()
	return &TCPListener{
		cfg:     d,
		raw:     cfg,
		up:      up,
		service: serviceOf(up),
		log:     opts.logger().With("listener", cfg.Name),
		obs:     opts.TCPObserver,
		dialer:  net.Dialer{Timeout: d.ConnectTimeout, KeepAliveConfig: keepAlive},
		tr:      opts.tracing(cfg.Name),
	}
}

// Name returns the listener's configured name.
func (l *TCPListener) Name() string { return l.cfg.Name }

// Update makes connections accepted from now on use cfg and up; open
// connections keep what they were accepted with. cfg must keep the
// listener's Name and Listen (a new address is a new listener: see
// Server.Apply) and be valid; otherwise Update changes nothing and says why.
// It is safe to call while the listener serves, from one goroutine at a
// time.
func (l *TCPListener) Update(cfg TCPConfig, up Upstream) error {
	if cfg.Name != l.raw.Name || cfg.Listen != l.raw.Listen {
		return fmt.Errorf("listener %q: Update cannot change name or address (%q at %s to %q at %s)",
			l.raw.Name, l.raw.Name, l.raw.Listen, cfg.Name, cfg.Listen)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	g := NewTCPListener(cfg, up, Options{})
	g.log = l.log // already carries the listener's name
	g.obs = l.obs
	g.tr = l.tr
	g.front = l.front
	l.next.Store(g)
	return nil
}

// current is the generation new connections use: the latest Update's, or l.
func (l *TCPListener) current() *TCPListener {
	if g := l.next.Load(); g != nil {
		return g
	}
	return l
}

func (l *TCPListener) listenAddr() string              { return l.cfg.Listen }
func (l *TCPListener) validate() error                 { return l.raw.Validate() }
func (l *TCPListener) setListener(ln *net.TCPListener) { l.ln = ln }
func (l *TCPListener) listener() *net.TCPListener      { return l.ln }

// logEvery is the least time between two warnings of one kind from one
// listener; the next warning says how many were suppressed.
const logEvery = 10 * time.Second

// logLimiter lets one log line through per logEvery and counts the rest.
type logLimiter struct {
	last       atomic.Int64 // unix nanoseconds of the last line let through
	suppressed atomic.Int64
}

// allow reports whether a line may be logged now and, if so, how many were
// suppressed since the last one.
func (r *logLimiter) allow() (bool, int64) {
	now := time.Now().UnixNano()
	last := r.last.Load()
	if (last != 0 && now-last < int64(logEvery)) || !r.last.CompareAndSwap(last, now) {
		r.suppressed.Add(1)
		return false, 0
	}
	return true, r.suppressed.Swap(0)
}
