package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// echoGreeter is a backend that greets each connection with name, then
// echoes lines until the client closes.
func echoGreeter(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", name)
				io.Copy(c, c)
			})
		}
	})
	return ln.Addr().String()
}

// freePort returns a loopback address nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// reloadRig is a process run from a config file on disk.
type reloadRig struct {
	t    *testing.T
	p    *process
	sigs chan os.Signal
	done chan error
	path string
	logs *syncBuffer
}

// services lists b.test and c.test, each with one greeting backend.
func servicesFile(b, c string) string {
	ep := func(addr string) string {
		host, port, _ := net.SplitHostPort(addr)
		return fmt.Sprintf("{address: %s, port: %s}", host, port)
	}
	return fmt.Sprintf("services:\n  - name: b.test\n    endpoints: [%s]\n  - name: c.test\n    endpoints: [%s]\n", ep(b), ep(c))
}

func startRig(t *testing.T, config, services string) *reloadRig {
	t.Helper()
	return startRigIn(t, t.TempDir(), config, services)
}

// startRigIn is startRig with the files in dir.
func startRigIn(t *testing.T, dir, config, services string) *reloadRig {
	t.Helper()
	r := &reloadRig{t: t, path: filepath.Join(dir, "outrigger.yaml"), sigs: make(chan os.Signal, 4),
		done: make(chan error, 1), logs: &syncBuffer{}}
	if err := os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(services), 0o644); err != nil {
		t.Fatal(err)
	}
	r.write(config)
	cfg, err := LoadConfig(r.path)
	if err != nil {
		t.Fatal(err)
	}
	r.p, err = build(cfg, slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- r.p.run(ctx, r.sigs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("run did not return")
		}
		if t.Failed() {
			t.Logf("logs:\n%s", r.logs.String())
		}
	})
	r.waitFor("ready", func() bool { ok, _ := r.p.ready(); return ok })
	return r
}

// write saves the config as editors do: a new file renamed over the old.
func (r *reloadRig) write(config string) {
	r.t.Helper()
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(config), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.path); err != nil {
		r.t.Fatal(err)
	}
}

func (r *reloadRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("not %s within 10s:\n%s", what, r.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *reloadRig) status() reloadStatus {
	return r.p.configView().(configView).Reload
}

// reload edits the config, sends SIGHUP, and waits for the reload to end
// with the generation or the failure count one higher.
func (r *reloadRig) reload(config string) reloadStatus {
	r.t.Helper()
	before := r.status()
	r.write(config)
	r.sigs <- syscall.SIGHUP
	r.waitFor("reloaded", func() bool {
		s := r.status()
		return s.Generation > before.Generation || s.Failures > before.Failures
	})
	return r.status()
}

func (r *reloadRig) addr(name string) string {
	r.t.Helper()
	a := r.p.server.Addrs()[name]
	if a == nil {
		r.t.Fatalf("no listener %q", name)
	}
	return a.String()
}

type lineConn struct {
	net.Conn
	r    *bufio.Reader
	name string
}

func dialLine(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting through %s: %v", addr, err)
	}
	return &lineConn{Conn: c, r: r, name: strings.TrimSpace(line)}
}

func (c *lineConn) echoes(t *testing.T, msg string) {
	t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write to %s: %v", c.name, err)
	}
	if got, err := c.r.ReadString('\n'); err != nil || got != msg+"\n" {
		t.Fatalf("echo from %s = %q, %v; want %q", c.name, got, err, msg)
	}
}

func rigConfig(listeners string) string {
	return `admin: {listen: "127.0.0.1:0"}
drain: {timeout: 10s}
discovery: [{name: local, file: {path: services.yaml}}]
outbound:
` + listeners
}

func TestReloadRejectsBadEditAndKeepsRunning(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	b := echoGreeter(t, "b1")
	a1 := freePort(t)
	good := rigConfig(fmt.Sprintf("  - {name: a, listen: %q, service: b.test}\n", a1))
	r := startRig(t, good, servicesFile(b, echoGreeter(t, "c1")))
	open := dialLine(t, r.addr("a"))

	bad := rigConfig(fmt.Sprintf("  - name: a\n    listen: %q\n    service: c.test\n    balancer: rr\n", a1))
	st := r.reload(bad)
	if st.Failures != 1 || st.Generation != 1 {
		t.Fatalf("status after a bad edit: %+v", st)
	}
	want := r.path + `:8: outbound[0].balancer: unknown balancer "rr" (want round_robin or least_conn)`
	if len(st.LastError) != 1 || st.LastError[0] != want {
		t.Errorf("last_error %q, want [%q]", st.LastError, want)
	}
	if logs := r.logs.String(); !strings.Contains(logs, "level=ERROR msg=\"config problem\" problem=\""+strings.ReplaceAll(want, `"`, `\"`)) ||
		!strings.Contains(logs, "config reload failed; the running config stays") {
		t.Errorf("logs lack the problem at ERROR:\n%s", logs)
	}
	open.echoes(t, "still open")
	if c := dialLine(t, r.addr("a")); c.name != "b1" {
		t.Errorf("after the rejected edit a new connection reached %q, want b1 (old config)", c.name)
	}

	// The next good edit applies and clears the error.
	st = r.reload(strings.Replace(good, "b.test", "c.test", 1))
	if st.Generation != 2 || len(st.LastError) != 0 || st.Failures != 1 {
		t.Errorf("status after a good edit: %+v", st)
	}
}

// A TCP listener moved to another service: new connections go there, the
// open one stays with its endpoint.
func TestReloadTCPListenerInPlace(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	a1 := freePort(t)
	r := startRig(t, rigConfig(fmt.Sprintf("  - {name: a, listen: %q, service: b.test}\n", a1)),
		servicesFile(echoGreeter(t, "b1"), echoGreeter(t, "c1")))
	open := dialLine(t, r.addr("a"))
	r.reload(rigConfig(fmt.Sprintf("  - {name: a, listen: %q, service: c.test, idle_timeout: 1m}\n", a1)))
	if c := dialLine(t, r.addr("a")); c.name != "c1" {
		t.Errorf("after the reload a new connection reached %q, want c1", c.name)
	}
	if open.name != "b1" {
		t.Fatalf("first connection reached %q", open.name)
	}
	open.echoes(t, "kept its endpoint")
	if got := r.p.configView().(configView).Outbound[0].Service; got != "c.test" {
		t.Errorf("/config shows service %q, want c.test", got)
	}
	if !strings.Contains(r.logs.String(), "balancers stopped: b.test; balancers started: c.test; listeners updated in place: a") {
		t.Errorf("no reload summary in the logs")
	}
}

// A listener added, one removed: the removed one refuses new connections
// but its open connection drains; the other listener's connection is not
// touched.
func TestReloadAddsAndRemovesListeners(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	a1, a2, a3 := freePort(t), freePort(t), freePort(t)
	r := startRig(t, rigConfig(fmt.Sprintf("  - {name: a, listen: %q, service: b.test}\n  - {name: b, listen: %q, service: c.test}\n", a1, a2)),
		servicesFile(echoGreeter(t, "b1"), echoGreeter(t, "c1")))
	ca, cb := dialLine(t, a1), dialLine(t, a2)

	r.reload(rigConfig(fmt.Sprintf("  - {name: b, listen: %q, service: c.test}\n  - {name: n, listen: %q, service: b.test}\n", a2, a3)))
	if c := dialLine(t, a3); c.name != "b1" {
		t.Errorf("new listener reached %q, want b1", c.name)
	}
	if c, err := net.Dial("tcp", a1); err == nil {
		c.Close()
		t.Error("removed listener still accepts")
	}
	ca.echoes(t, "draining")
	cb.echoes(t, "untouched")
	// b.test is still used (by n), so its balancer stayed.
	if logs := r.logs.String(); !strings.Contains(logs, "listeners removed: a; listeners added: n") || strings.Contains(logs, "balancers stopped") {
		t.Errorf("reload summary wrong:\n%s", logs)
	}
}

// A new listener that cannot bind fails the reload as a whole.
func TestReloadBindFailureChangesNothing(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	a1 := freePort(t)
	good := rigConfig(fmt.Sprintf("  - {name: a, listen: %q, service: b.test}\n", a1))
	r := startRig(t, good, servicesFile(echoGreeter(t, "b1"), echoGreeter(t, "c1")))
	// Picked last, so that no listener this test starts on port 0 can
	// have been given it meanwhile.
	a2 := freePort(t)
	st := r.reload(rigConfig(fmt.Sprintf("  - {name: a, listen: %q, service: c.test}\n  - {name: x, listen: %q, service: c.test}\n  - {name: y, listen: %q, service: c.test}\n",
		a1, a2, taken.Addr().String())))
	want := fmt.Sprintf(`listener "y": listen tcp %s: bind: address already in use`, taken.Addr())
	if st.Failures != 1 || st.Generation != 1 || len(st.LastError) != 1 || st.LastError[0] != want {
		t.Fatalf("status %+v, want one failure: %q", st, want)
	}
	if c := dialLine(t, a1); c.name != "b1" {
		t.Errorf("listener a reached %q after the failed reload, want b1", c.name)
	}
	if ln, err := net.Listen("tcp", a2); err != nil {
		t.Errorf("listener x's address still bound after the failed reload: %v", err)
	} else {
		ln.Close()
	}
	if addrs := r.p.server.Addrs(); len(addrs) != 1 {
		t.Errorf("listeners after the failed reload: %v", addrs)
	}
}

// A save to the file is picked up without a signal; node changes are
// reported and not applied.
func TestReloadOnFileChange(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	a1 := freePort(t)
	cfg := rigConfig(fmt.Sprintf("  - {name: a, listen: %q, service: b.test}\n", a1))
	r := startRig(t, cfg, servicesFile(echoGreeter(t, "b1"), echoGreeter(t, "c1")))
	r.write("node: {name: other}\n" + strings.Replace(cfg, "b.test", "c.test", 1))
	r.waitFor("reloaded by the file watch", func() bool { return r.status().Generation == 2 })
	if c := dialLine(t, a1); c.name != "c1" {
		t.Errorf("after the file change a new connection reached %q, want c1", c.name)
	}
	st := r.status()
	if len(st.RestartNeeded) != 1 || st.RestartNeeded[0] != "node" {
		t.Errorf("restart_needed %v, want [node]", st.RestartNeeded)
	}
	if name := r.p.configView().(configView).Node.Name; name != "" {
		t.Errorf("node name %q applied without a restart", name)
	}
	if !strings.Contains(r.logs.String(), "config change needs a restart; the running value stays\" field=node") {
		t.Error("no warning about the node change")
	}
}

// An http listener's certificate files changed in the config: the listener
// is replaced on its socket with the new certificate, and the old
// certificate watch stops (goleak).
func TestReloadTLSListenerNewCertificate(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	a1 := freePort(t)
	cfg := func(cert string) string {
		return rigConfig(fmt.Sprintf("  - {name: web, listen: %q, protocol: http, service: b.test, tls: {cert_file: %s.crt, key_file: %s.key}}\n", a1, cert, cert))
	}
	dir := t.TempDir()
	writeSelfSigned(t, dir, "first")
	writeSelfSigned(t, dir, "second")
	r := startRigIn(t, dir, cfg("first"), servicesFile(echoGreeter(t, "b1"), echoGreeter(t, "c1")))
	if got := subjectOf(t, a1); got != "first" {
		t.Fatalf("certificate %q, want first", got)
	}
	r.reload(cfg("second"))
	if got := subjectOf(t, a1); got != "second" {
		t.Errorf("after the reload: certificate %q, want second", got)
	}
	if !strings.Contains(r.logs.String(), "listeners removed: web; listeners added: web") {
		t.Error("the listener was not replaced")
	}
}

// A changed resilience setting rebuilds that service's balancer (so its
// listener picks with the new settings); a service whose settings did not
// change keeps its balancer, and with it its endpoints' live state.
func TestReloadUpstreamSettingsRebuildOnlyTheirBalancer(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	a1, a2 := freePort(t), freePort(t)
	listeners := fmt.Sprintf("  - {name: a, listen: %q, service: b.test}\n  - {name: c, listen: %q, service: c.test}\n", a1, a2)
	config := func(bOpen string) string {
		return rigConfig(listeners) + "upstreams:\n  b.test:\n    circuit_breaker: {consecutive_failures: 2, open: " + bOpen +
			"}\n  c.test:\n    outlier_detection: {consecutive_local_origin_failures: 3}\n"
	}
	r := startRig(t, config("30s"), servicesFile(echoGreeter(t, "b1"), echoGreeter(t, "c1")))
	balancers := func() (b, c *balancerRun) {
		r.p.mu.Lock()
		defer r.p.mu.Unlock()
		return r.p.balancers["b.test"], r.p.balancers["c.test"]
	}
	oldB, oldC := balancers()
	if st := oldB.b.Status(); len(st.Endpoints) != 1 || st.Endpoints[0].Breaker == nil || st.Endpoints[0].Outlier != nil {
		t.Fatalf("b.test status %+v, want one endpoint with a breaker and no outlier detection", st)
	}
	if st := oldC.b.Status(); len(st.Endpoints) != 1 || st.Endpoints[0].Outlier == nil || st.Endpoints[0].Breaker != nil {
		t.Fatalf("c.test status %+v, want one endpoint with outlier detection and no breaker", st)
	}
	open := dialLine(t, a1)

	if st := r.reload(config("1m")); st.Generation != 2 || len(st.LastError) != 0 {
		t.Fatalf("status after the reload: %+v", st)
	}
	newB, newC := balancers()
	if newB == oldB {
		t.Error("b.test's settings changed but its balancer was kept")
	}
	if newC != oldC {
		t.Error("c.test's settings did not change but its balancer was replaced")
	}
	if c := dialLine(t, a1); c.name != "b1" {
		t.Errorf("after the reload a new connection reached %q, want b1", c.name)
	}
	if st := newB.b.Status(); len(st.Endpoints) != 1 || st.Endpoints[0].Breaker == nil || st.Endpoints[0].Picks != 1 {
		t.Errorf("new b.test balancer status %+v, want its one endpoint with a breaker and the one pick since the reload", st)
	}
	open.echoes(t, "kept across the rebuild")
	if !strings.Contains(r.logs.String(), "balancers stopped: b.test; balancers started: b.test; listeners updated in place: a") {
		t.Errorf("no reload summary in the logs")
	}
}

// A discovery source whose config changed is restarted without a gap: its
// services keep the old run's endpoints until the new run reports, even
// when that takes a while (here its file does not exist yet), and then go
// straight to the new run's (catalog.ResetSource).
func TestReloadChangedSourceHasNoGap(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	a1 := freePort(t)
	listeners := fmt.Sprintf("  - {name: a, listen: %q, service: b.test}\n", a1)
	r := startRig(t, rigConfig(listeners), servicesFile(echoGreeter(t, "b1"), echoGreeter(t, "c1")))
	if c := dialLine(t, r.addr("a")); c.name != "b1" {
		t.Fatalf("reached %q, want b1", c.name)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var empty []uint64
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for snap := range r.p.catalog.Watch(ctx, "b.test") {
			if len(snap.Endpoints) == 0 {
				empty = append(empty, snap.Version)
			}
		}
	}()
	cfg := strings.Replace(rigConfig(listeners), "services.yaml", "services2.yaml", 1)
	if s := r.reload(cfg); len(s.LastError) > 0 {
		t.Fatalf("reload failed: %v", s.LastError)
	}
	r.waitFor("the new run to miss its file", func() bool {
		return strings.Contains(r.logs.String(), "services2.yaml")
	})
	if c := dialLine(t, r.addr("a")); c.name != "b1" {
		t.Errorf("while the new run has nothing to report a connection reached %q, want b1 (kept)", c.name)
	}
	dir := filepath.Dir(r.path)
	if err := os.WriteFile(filepath.Join(dir, "services2.yaml"), []byte(servicesFile(echoGreeter(t, "b2"), echoGreeter(t, "c2"))), 0o644); err != nil {
		t.Fatal(err)
	}
	r.waitFor("b2 reached", func() bool { return dialLine(t, r.addr("a")).name == "b2" })
	cancel()
	<-watched
	if len(empty) > 0 {
		t.Errorf("b.test published empty snapshots (versions %v) while its source restarted", empty)
	}
}
