package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A case is one line of a scenario's table: a backend, a route and a load
// that every target runs in turn.
type testCase struct {
	scenario string // B1, B3, ...
	variant  string // "1 stream", "c=16", ...
	backend  string // iperf, tcp, http, grpc
	nBackend int
	proto    string // route protocol, see route
	pinned   bool
	targets  []string
	// beside: each target runs side by side with this one, and is
	// measured against it (harness.runBeside)
	beside string
	// load runs the measured load against addr and returns its metrics.
	// valid is false when the achieved rate missed the target.
	load func(ctx context.Context, rc *runCtx) (m map[string]float64, valid bool, note string, err error)
}

// runCtx is what a load sees of one run.
type runCtx struct {
	h        *harness
	addr     string
	dir      string // raw outputs of this run
	proxy    *running
	backends []string
	mark     func() // restarts the CPU and memory window (before a retry)
}

func (rc *runCtx) raw(name string) string { return filepath.Join(rc.dir, name) }

const rate = 1000 // the fixed rate of the latency scenarios, req/s

// loadCPU is where load generators run: CPU 0 when pinned (with the
// backend), anywhere when not.
func loadCPU(pinned bool) string {
	if pinned {
		return "0"
	}
	return ""
}

// cases lists every scenario of the set, in table order.
func (h *harness) cases() []testCase {
	p := h.p
	d := p.Dur
	secs := fmt.Sprint(int(d.Seconds()))
	var cs []testCase
	l4 := []string{"direct", "outrigger", "haproxy", "nginx", "consul"}
	l7 := []string{"direct", "outrigger", "haproxy", "nginx", "caddy"}

	// B1: iperf3 bulk through the L4 listener, unpinned.
	for _, streams := range []int{1, 4} {
		cs = append(cs, testCase{
			scenario: "B1", variant: fmt.Sprintf("%d stream(s)", streams), backend: "iperf", nBackend: 1, proto: "tcp", targets: l4,
			load: func(ctx context.Context, rc *runCtx) (map[string]float64, bool, string, error) {
				host, port, _ := net.SplitHostPort(rc.addr)
				// The readiness check's connection reaches the one-test-at-a-time
				// iperf3 server too; if the test collides with it, retry.
				var gbps float64
				var err error
				for try := 1; try <= 3; try++ {
					time.Sleep(300 * time.Millisecond)
					rc.mark()
					gbps, err = iperf3(ctx, rc.raw(fmt.Sprintf("iperf3-%d.json", try)), d+30*time.Second,
						"-c", host, "-p", port, "-t", secs, "-P", fmt.Sprint(streams), "-J")
					if err == nil || ctx.Err() != nil {
						break
					}
				}
				if err != nil {
					return nil, false, "", err
				}
				return map[string]float64{"gbps": gbps}, true, "", nil
			},
		})
	}

	// B3: L4 request/response at a fixed rate, pinned.
	cs = append(cs, testCase{
		scenario: "B3", variant: fmt.Sprintf("%d req/s, c=4", rate), backend: "tcp", nBackend: 1, proto: "tcp", pinned: true, targets: l4,
		load: func(ctx context.Context, rc *runCtx) (map[string]float64, bool, string, error) {
			return fortio(ctx, rc, "tcp://"+rc.addr, 4, d, "-payload-size", "64")
		},
	})

	// B4: L7 HTTP/1.1, 1 KB responses, fixed rate, over a connection sweep, pinned.
	for _, c := range p.Sweep {
		cs = append(cs, testCase{
			scenario: "B4", variant: fmt.Sprintf("%d req/s, c=%d", rate, c), backend: "http", nBackend: 1, proto: "http", pinned: true, targets: l7,
			load: func(ctx context.Context, rc *runCtx) (map[string]float64, bool, string, error) {
				return fortio(ctx, rc, "http://"+rc.addr+"/", c, d)
			},
		})
	}

	// B9: the cost of features on but not firing, at the fixed rate,
	// pinned: Outrigger without them, then with them.
	cs = append(cs, testCase{
		scenario: "B9", variant: fmt.Sprintf("%d req/s, c=16", rate), backend: "http", nBackend: 1, proto: "http", pinned: true,
		targets: []string{"direct", "outrigger", "outrigger-res", "outrigger-trace0", "outrigger-trace100"},
		load: func(ctx context.Context, rc *runCtx) (map[string]float64, bool, string, error) {
			return fortio(ctx, rc, "http://"+rc.addr+"/", 16, d)
		},
	})
	// B9 beside: each feature's cost again, with Outrigger without it
	// running at the same time on the same core, so that both see the
	// same machine (runBeside); this is the row that can resolve a few
	// per cent.
	cs = append(cs, testCase{
		scenario: "B9", variant: fmt.Sprintf("%d req/s, c=16, beside outrigger, %gs", rate, p.PairDur.Seconds()),
		backend: "http", nBackend: 1, proto: "http", pinned: true, beside: "outrigger",
		targets: []string{"outrigger-res", "outrigger-trace0", "outrigger-trace100"},
		load: func(ctx context.Context, rc *runCtx) (map[string]float64, bool, string, error) {
			return fortio(ctx, rc, "http://"+rc.addr+"/", 16, p.PairDur)
		},
	})

	// B6: L7 saturation. Unpinned, the proxy shares both cores with the
	// load and the backend: every cycle it takes is one they lose. Pinned,
	// it is the sidecar's case: the load and the application (backend)
	// saturate CPU 0 and the proxy has CPU 1 to itself, as a sidecar
	// container has its own CPU share; the share of direct says how much
	// of the application's throughput the proxy costs (its latency, the
	// backend's idle gaps, its own core's limit).
	for _, pinned := range []bool{false, true} {
		variant := "wrk -t2 -c64"
		if pinned {
			variant += ", pinned"
		}
		cs = append(cs, testCase{
			scenario: "B6", variant: variant, backend: "http", nBackend: 1, proto: "http", pinned: pinned, targets: append(l7[:len(l7):len(l7)], "go-rp"),
			load: func(ctx context.Context, rc *runCtx) (map[string]float64, bool, string, error) {
				out, err := runTool(ctx, d+30*time.Second, rc.raw("wrk.txt"), loadCPU(pinned), "wrk", "-t", "2", "-c", "64", "-d", secs+"s", "http://"+rc.addr+"/")
				if err != nil {
					return nil, false, "", err
				}
				return parseWrk(out)
			},
		})
	}

	// B7: HTTP/2 many streams on few connections (h2load, unpinned) and gRPC
	// at a fixed rate (ghz, pinned), both over three backends.
	cs = append(cs, testCase{
		scenario: "B7", variant: "h2load -c2 -m64", backend: "http", nBackend: 3, proto: "h2", targets: l7,
		load: func(ctx context.Context, rc *runCtx) (map[string]float64, bool, string, error) {
			stop := sampleConns(rc, d/2)
			out, err := runTool(ctx, d+30*time.Second, rc.raw("h2load.txt"), "", "h2load", "-c", "2", "-m", "64", "-t", "1", "-D", secs, "http://"+rc.addr+"/")
			conns := stop()
			if err != nil {
				return nil, false, "", err
			}
			m, ok, note, err := parseH2load(out)
			if m != nil {
				m["upstream_conns"] = conns
			}
			return m, ok, note, err
		},
	})
	cs = append(cs, testCase{
		scenario: "B7", variant: fmt.Sprintf("ghz %d req/s, c=16, 1 conn", rate), backend: "grpc", nBackend: 3, proto: "grpc", pinned: true, targets: l7,
		load: func(ctx context.Context, rc *runCtx) (map[string]float64, bool, string, error) {
			stop := sampleConns(rc, d/2)
			m, ok, note, err := ghz(ctx, rc, d)
			conns := stop()
			if m != nil {
				m["upstream_conns"] = conns
			}
			return m, ok, note, err
		},
	})

	// B10: footprint with idle keep-alive connections, unpinned.
	l7peers := l7[1:]
	cs = append(cs, testCase{
		scenario: "B10", variant: fmt.Sprintf("idle, %d and %d keep-alive conns", p.Idle[0], p.Idle[1]), backend: "http", nBackend: 1, proto: "http", targets: l7peers,
		load: footprint,
	})
	return cs
}

func iperf3(ctx context.Context, raw string, limit time.Duration, args ...string) (float64, error) {
	out, err := runTool(ctx, limit, raw, "", append([]string{"iperf3"}, args...)...)
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		if err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("iperf3 output: %w", jerr)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if err != nil {
		return 0, err
	}
	if r.End.SumReceived.BitsPerSecond == 0 {
		return 0, fmt.Errorf("iperf3: no bytes received")
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

// fortio runs fortio at the fixed rate with c connections for d.
func fortio(ctx context.Context, rc *runCtx, url string, c int, d time.Duration, extra ...string) (map[string]float64, bool, string, error) {
	path := rc.raw("fortio.json")
	argv := []string{filepath.Join(rc.h.toolsBin, "fortio"), "load",
		"-qps", fmt.Sprint(rate), "-uniform", "-r", "0.00001", "-c", fmt.Sprint(c), "-t", d.String(),
		"-p", "50,90,99", "-json", path}
	argv = append(append(argv, extra...), url)
	_, err := runTool(ctx, d+30*time.Second, rc.raw("fortio.txt"), "0", argv...)
	if err != nil {
		return nil, false, "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, "", err
	}
	var r struct {
		ActualQPS         float64
		DurationHistogram struct {
			Count       int64
			Percentiles []struct{ Percentile, Value float64 }
		}
		ErrorsDurationHistogram struct{ Count int64 }
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, false, "", fmt.Errorf("fortio output: %w", err)
	}
	m := map[string]float64{"rps": r.ActualQPS, "errors": float64(r.ErrorsDurationHistogram.Count)}
	for _, pc := range r.DurationHistogram.Percentiles {
		m[fmt.Sprintf("p%d_us", int(pc.Percentile))] = pc.Value * 1e6
	}
	if r.DurationHistogram.Count == 0 || m["p50_us"] == 0 {
		return nil, false, "", fmt.Errorf("fortio: no requests measured")
	}
	// fortio plans floor(rate·d/c) calls per connection, so with many
	// connections it plans slightly fewer than rate·d: hold it to its plan.
	planned := float64(int(rate*d.Seconds())/c*c) / d.Seconds()
	return checkRate(m, planned)
}

// checkRate marks a fixed-rate run invalid when it missed the target rate
// by more than 3% (the load generators' ramp-up and tail in a few-second
// run cost up to about 2.5%) or had errors.
func checkRate(m map[string]float64, target float64) (map[string]float64, bool, string, error) {
	if m["rps"] < 0.97*target {
		return m, false, fmt.Sprintf("achieved %.0f req/s of %.0f", m["rps"], target), nil
	}
	if m["errors"] > 0 {
		return m, false, fmt.Sprintf("%.0f errors", m["errors"]), nil
	}
	return m, true, "", nil
}

var (
	reWrkRPS    = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	reWrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	reWrkSock   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func parseWrk(out string) (map[string]float64, bool, string, error) {
	mm := reWrkRPS.FindStringSubmatch(out)
	if mm == nil {
		return nil, false, "", fmt.Errorf("wrk: no Requests/sec in output")
	}
	rps, _ := strconv.ParseFloat(mm[1], 64)
	var errs float64
	if mm := reWrkNon2xx.FindStringSubmatch(out); mm != nil {
		n, _ := strconv.ParseFloat(mm[1], 64)
		errs += n
	}
	if mm := reWrkSock.FindStringSubmatch(out); mm != nil {
		for _, s := range mm[1:] {
			n, _ := strconv.ParseFloat(s, 64)
			errs += n
		}
	}
	return map[string]float64{"rps": rps, "errors": errs}, true, "", nil
}

var (
	reH2RPS  = regexp.MustCompile(`finished in [^,]+, ([\d.]+) req/s`)
	reH2Reqs = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	reH2Time = regexp.MustCompile(`time for request:\s+(\S+)\s+(\S+)\s+(\S+)`)
)

func parseH2load(out string) (map[string]float64, bool, string, error) {
	mm := reH2RPS.FindStringSubmatch(out)
	rq := reH2Reqs.FindStringSubmatch(out)
	if mm == nil || rq == nil {
		return nil, false, "", fmt.Errorf("h2load: no result in output: %s", lastLine(out))
	}
	rps, _ := strconv.ParseFloat(mm[1], 64)
	succeeded, _ := strconv.ParseFloat(rq[4], 64)
	m := map[string]float64{"rps": rps}
	var errs float64
	for _, s := range rq[5:] {
		n, _ := strconv.ParseFloat(s, 64)
		errs += n
	}
	m["errors"] = errs
	if t := reH2Time.FindStringSubmatch(out); t != nil {
		m["mean_us"] = parseDur(t[3])
	}
	if succeeded == 0 {
		return nil, false, "", fmt.Errorf("h2load: no request succeeded")
	}
	return m, true, "", nil
}

// parseDur reads h2load's durations ("1.23ms", "456us", "2.1s") as µs.
func parseDur(s string) float64 {
	for _, u := range []struct {
		suf string
		mul float64
	}{{"us", 1}, {"ms", 1e3}, {"s", 1e6}} {
		if v, ok := strings.CutSuffix(s, u.suf); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f * u.mul
		}
	}
	return 0
}

// ghz calls grpc.health.v1.Health/Check at the fixed rate on one connection.
func ghz(ctx context.Context, rc *runCtx, d time.Duration) (map[string]float64, bool, string, error) {
	path := rc.raw("ghz.json")
	_, err := runTool(ctx, d+30*time.Second, rc.raw("ghz.txt"), "0", filepath.Join(rc.h.toolsBin, "ghz"), "--insecure",
		"--proto", filepath.Join(rc.h.root, "bench", "proto", "health.proto"), "--call", "grpc.health.v1.Health/Check",
		// A count, not -z: at the end of a duration ghz cancels the calls in
		// flight and reports them as errors.
		"-d", "{}", "--rps", fmt.Sprint(rate), "-n", fmt.Sprint(int(d.Seconds()*rate)), "-c", "16", "--connections", "1",
		"-O", "json", "-o", path, rc.addr)
	if err != nil {
		return nil, false, "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, "", err
	}
	var r struct {
		Count               int64
		Rps                 float64
		LatencyDistribution []struct {
			Percentage int
			Latency    float64 // ns
		}
		StatusCodeDistribution map[string]int64
		ErrorDistribution      map[string]int64
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, false, "", fmt.Errorf("ghz output: %w", err)
	}
	m := map[string]float64{"rps": r.Rps}
	for _, l := range r.LatencyDistribution {
		m[fmt.Sprintf("p%d_us", l.Percentage)] = l.Latency / 1e3
	}
	var errs int64
	for code, n := range r.StatusCodeDistribution {
		if code != "OK" {
			errs += n
		}
	}
	m["errors"] = float64(errs)
	if r.Count == 0 || m["p50_us"] == 0 {
		return nil, false, "", fmt.Errorf("ghz: no calls measured")
	}
	return checkRate(m, rate)
}

// sampleConns counts, after delay, the established TCP connections to the
// backends (for a proxy, its upstream connections); stop returns the count.
func sampleConns(rc *runCtx, delay time.Duration) (stop func() float64) {
	ports := map[int]bool{}
	for _, b := range rc.backends {
		_, p, _ := net.SplitHostPort(b)
		n, _ := strconv.Atoi(p)
		ports[n] = true
	}
	var (
		mu sync.Mutex
		n  float64
	)
	t := time.AfterFunc(delay, func() {
		c := float64(countEstablished(ports))
		mu.Lock()
		n = c
		mu.Unlock()
	})
	return func() float64 {
		t.Stop()
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// countEstablished counts ESTABLISHED sockets in this network namespace
// whose remote port is one of ports.
func countEstablished(ports map[int]bool) int {
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 4 || fs[3] != "01" {
				continue
			}
			i := strings.LastIndexByte(fs[2], ':')
			pb, err := hex.DecodeString(fs[2][i+1:])
			if err != nil || len(pb) != 2 {
				continue
			}
			if ports[int(pb[0])<<8|int(pb[1])] {
				n++
			}
		}
	}
	return n
}

// footprint measures the proxy's RSS idle and holding p.Idle[0] and then
// p.Idle[1] idle keep-alive connections, each of which has carried one request.
func footprint(ctx context.Context, rc *runCtx) (map[string]float64, bool, string, error) {
	var pids []int
	for _, p := range rc.proxy.counted {
		pids = append(pids, tree(p.pid())...)
	}
	time.Sleep(time.Second)
	m := map[string]float64{"rss_idle_mb": memKB(pids, "VmRSS") / 1024}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	log, err := os.Create(rc.raw("footprint.txt"))
	if err != nil {
		return nil, false, "", err
	}
	defer log.Close()
	fmt.Fprintf(log, "idle: VmRSS %.1f MB\n", m["rss_idle_mb"])
	for i, target := range rc.h.p.Idle {
		more, err := openIdle(ctx, rc.addr, target-len(conns))
		conns = append(conns, more...)
		if err != nil {
			return nil, false, "", fmt.Errorf("after %d connections: %w", len(conns), err)
		}
		time.Sleep(time.Second)
		rss := memKB(pids, "VmRSS") / 1024
		fmt.Fprintf(log, "%d connections: VmRSS %.1f MB\n", len(conns), rss)
		m[fmt.Sprintf("rss_conns%d_mb", i+1)] = rss
	}
	m["kb_per_conn"] = (m["rss_conns2_mb"] - m["rss_idle_mb"]) * 1024 / float64(len(conns))
	return m, true, "", nil
}

// openIdle opens n connections to addr, sends one GET on each and reads its
// response, and returns them open.
func openIdle(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	const workers = 32
	var (
		mu    sync.Mutex
		conns []net.Conn
		first error
		wg    sync.WaitGroup
	)
	next := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := oneRequest(addr)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if c != nil {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < n && ctx.Err() == nil && time.Now().Before(deadline); i++ {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	if first == nil && len(conns) < n {
		first = fmt.Errorf("opened %d of %d connections in time", len(conns), n)
	}
	return conns, first
}

func oneRequest(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	if !strings.Contains(status, " 200 ") {
		c.Close()
		return nil, fmt.Errorf("status %q", strings.TrimSpace(status))
	}
	length := -1
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.Close()
			return nil, err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length < 0 {
		c.Close()
		return nil, fmt.Errorf("no Content-Length")
	}
	if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
