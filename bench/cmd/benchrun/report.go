package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// probe checks that a request makes it through before measuring, retrying
// for a while (a proxy may accept before it has its endpoints), and warms
// connection pools.
func probe(ctx context.Context, c testCase, addr string) error {
	var try func() error
	switch {
	case c.backend == "tcp":
		try = func() error {
			conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(conn, "probe\n"); err != nil {
				return err
			}
			buf := make([]byte, 6)
			if _, err := io.ReadFull(conn, buf); err != nil {
				return err
			}
			if string(buf) != "probe\n" {
				return fmt.Errorf("echoed %q", buf)
			}
			return nil
		}
	case c.proto == "http" || c.proto == "h2":
		tr := &http.Transport{Protocols: new(http.Protocols)}
		if c.proto == "h2" {
			tr.Protocols.SetUnencryptedHTTP2(true)
		} else {
			tr.Protocols.SetHTTP1(true)
		}
		defer tr.CloseIdleConnections()
		cl := &http.Client{Transport: tr, Timeout: 2 * time.Second}
		try = func() error {
			for i := 0; i < 20; i++ {
				resp, err := cl.Get("http://" + addr + "/")
				if err != nil {
					return err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return fmt.Errorf("status %s", resp.Status)
				}
			}
			return nil
		}
	default:
		return nil // iperf3 and gRPC: the port was enough
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := try()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var reServed = regexp.MustCompile(`echo stopped .*requests=(\d+)`)

// spread is min/max of the requests the backends answered (1 = even).
func spread(backends []*proc) (float64, bool) {
	lo, hi := math.Inf(1), 0.0
	for _, b := range backends {
		out, _ := os.ReadFile(b.log)
		m := reServed.FindSubmatch(out)
		if m == nil {
			return 0, false
		}
		n, _ := strconv.ParseFloat(string(m[1]), 64)
		lo, hi = math.Min(lo, n), math.Max(hi, n)
	}
	if hi == 0 {
		return 0, false
	}
	return lo / hi, true
}

type results struct {
	Set      string            `json:"set"`
	Label    string            `json:"label,omitempty"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Params   params            `json:"params"`
	Env      [][2]string       `json:"environment"`
	Skipped  map[string]string `json:"skipped_targets,omitempty"`
	Summary  []summary         `json:"summary"`
	Runs     []run             `json:"runs"`
}

// summary is the median and range of one metric over the repetitions.
type summary struct {
	Scenario string  `json:"scenario"`
	Variant  string  `json:"variant"`
	Target   string  `json:"target"`
	Metric   string  `json:"metric"`
	Median   float64 `json:"median"`
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	N        int     `json:"n"`
	// Invalid is set when no run was valid and these numbers come from
	// invalid runs (achieved rate below target, or errors).
	Invalid bool `json:"invalid,omitempty"`
}

type key struct{ scenario, variant, target string }

func (r *results) summarize(cases []testCase) {
	groups := map[key][]run{}
	for _, x := range r.Runs {
		k := key{x.Scenario, x.Variant, x.Target}
		groups[k] = append(groups[k], x)
	}
	for _, c := range cases {
		for _, t := range c.targets {
			runs := groups[key{c.scenario, c.variant, t}]
			var use []run
			for _, x := range runs {
				if x.Error == "" && x.Valid {
					use = append(use, x)
				}
			}
			invalid := false
			if len(use) == 0 {
				for _, x := range runs {
					if x.Error == "" && x.Metrics != nil {
						use = append(use, x)
						invalid = true
					}
				}
			}
			metrics := map[string][]float64{}
			for _, x := range use {
				for m, v := range x.Metrics {
					metrics[m] = append(metrics[m], v)
				}
			}
			names := make([]string, 0, len(metrics))
			for m := range metrics {
				names = append(names, m)
			}
			sort.Strings(names)
			for _, m := range names {
				v := metrics[m]
				sort.Float64s(v)
				med := v[len(v)/2]
				if len(v)%2 == 0 {
					med = (v[len(v)/2-1] + v[len(v)/2]) / 2
				}
				r.Summary = append(r.Summary, summary{c.scenario, c.variant, t, m, med, v[0], v[len(v)-1], len(v), invalid})
			}
		}
	}
}

func (r *results) get(k key, metric string) (summary, bool) {
	for _, s := range r.Summary {
		if s.Scenario == k.scenario && s.Variant == k.variant && s.Target == k.target && s.Metric == metric {
			return s, true
		}
	}
	return summary{}, false
}

// A column of a scenario's table: a metric, or a metric relative to direct.
type column struct {
	head   string
	metric string
	rel    string // "": the metric; "share": ÷ direct; "added": − direct; "over": % above outrigger
	format string
}

var columns = map[string][]column{
	"B1": {{"Gbit/s", "gbps", "", "%.1f"}, {"share of direct", "gbps", "share", "%.2f"}, {"proxy cores", "proxy_cores", "", "%.2f"}},
	"B3": {{"req/s", "rps", "", "%.0f"}, {"p50 µs", "p50_us", "", "%.0f"}, {"p90 µs", "p90_us", "", "%.0f"},
		{"added p50 µs", "p50_us", "added", "%+.0f"}, {"added p90 µs", "p90_us", "added", "%+.0f"},
		{"vCPU", "proxy_cores", "", "%.3f"}, {"RSS MB", "rss_mb", "", "%.1f"}, {"errors", "errors", "", "%.0f"}},
	"B4": {{"req/s", "rps", "", "%.0f"}, {"p50 µs", "p50_us", "", "%.0f"}, {"p90 µs", "p90_us", "", "%.0f"},
		{"added p50 µs", "p50_us", "added", "%+.0f"}, {"added p90 µs", "p90_us", "added", "%+.0f"}, {"p99 µs (info)", "p99_us", "", "%.0f"},
		{"vCPU per 1k req/s", "vcpu_per_krps", "", "%.3f"}, {"RSS MB", "rss_mb", "", "%.1f"}, {"errors", "errors", "", "%.0f"}},
	"B6": {{"req/s", "rps", "", "%.0f"}, {"share of direct", "rps", "share", "%.2f"}, {"req/s per proxy core", "rps_per_core", "", "%.0f"},
		{"proxy cores", "proxy_cores", "", "%.2f"}, {"errors", "errors", "", "%.0f"}},
	"B7": {{"req/s", "rps", "", "%.0f"}, {"share of direct", "rps", "share", "%.2f"}, {"mean µs (h2load)", "mean_us", "", "%.0f"},
		{"p50 µs", "p50_us", "", "%.0f"}, {"p90 µs", "p90_us", "", "%.0f"}, {"added p50 µs", "p50_us", "added", "%+.0f"},
		{"spread min/max", "spread", "", "%.2f"}, {"upstream conns", "upstream_conns", "", "%.0f"},
		{"proxy cores", "proxy_cores", "", "%.2f"}, {"errors", "errors", "", "%.0f"}},
	"B9": {{"req/s", "rps", "", "%.0f"}, {"p50 µs", "p50_us", "", "%.0f"}, {"p90 µs", "p90_us", "", "%.0f"},
		{"added p50 µs", "p50_us", "added", "%+.0f"}, {"vCPU per 1k req/s", "vcpu_per_krps", "", "%.3f"},
		{"vCPU vs outrigger", "vcpu_per_krps", "over", "%+.1f%%"}, {"vCPU vs outrigger beside it", "vcpu_over_beside", "", "%+.1f%%"},
		{"RSS MB", "rss_mb", "", "%.1f"}, {"errors", "errors", "", "%.0f"}},
	"B10": {{"RSS idle MB", "rss_idle_mb", "", "%.1f"}, {"RSS MB, %d conns", "rss_conns1_mb", "", "%.1f"},
		{"RSS MB, %d conns", "rss_conns2_mb", "", "%.1f"}, {"KB per idle conn", "kb_per_conn", "", "%.1f"}},
}

var titles = map[string]string{
	"B1":  "L4 bulk throughput (iperf3), unpinned",
	"B3":  "L4 request/response at a fixed 1000 req/s (fortio tcp, 64 B echo), pinned",
	"B4":  "L7 HTTP/1.1, 1 KB responses, fixed 1000 req/s, connection sweep (fortio), pinned",
	"B6":  "L7 HTTP/1.1 saturation (wrk): unpinned, the proxy contending with load and backend for both cores; pinned, the sidecar case, load and backend saturating CPU 0 and the proxy on CPU 1",
	"B7":  "HTTP/2 many streams on few connections (h2load, unpinned) and gRPC at a fixed rate (ghz, pinned), over three backends",
	"B9":  "Feature overhead at a fixed 1000 req/s (fortio, 1 KB), pinned: outrigger-res adds retries with a budget, endpoint and route circuit breakers, outlier detection, HTTP health checks, route and per-client rate limits and in-flight and connection limits, all on but not firing; outrigger-trace0 and outrigger-trace100 trace every request (server and client span, OTLP over gRPC to a sink) at 0% and 100% sampling. The \"beside outrigger\" rows run each target side by side with Outrigger without the feature, both on CPU 1 at 1000 req/s each: their last CPU column is the one that resolves a few per cent on a noisy host (one after the other, the plain run alone moves by ±30%); their latencies are of two proxies sharing a core",
	"B10": "Footprint: RSS idle and with idle keep-alive connections (each carried one request), unpinned",
}

func (r *results) cell(k key, c column) string {
	s, ok := r.get(k, c.metric)
	if !ok {
		return "–"
	}
	med, lo, hi := s.Median, s.Min, s.Max
	if c.rel != "" {
		base := "direct"
		if c.rel == "over" {
			base = "outrigger"
		}
		if k.target == "direct" || k.target == base {
			return "–"
		}
		d, ok := r.get(key{k.scenario, k.variant, base}, c.metric)
		if !ok || d.Median == 0 {
			return "–"
		}
		switch c.rel {
		case "share":
			med, lo, hi = med/d.Median, lo/d.Median, hi/d.Median
		case "over":
			med, lo, hi = 100*(med/d.Median-1), 100*(lo/d.Median-1), 100*(hi/d.Median-1)
		default:
			med, lo, hi = med-d.Median, lo-d.Median, hi-d.Median
		}
	}
	out := fmt.Sprintf(c.format, med)
	if s.N > 1 {
		out += " (" + strings.TrimPrefix(fmt.Sprintf(c.format, lo), "+") + "–" + strings.TrimPrefix(fmt.Sprintf(c.format, hi), "+") + ")"
	}
	if s.Invalid {
		out += " †"
	}
	return out
}

// markdown renders the tables: per scenario, a row per variant and target.
func (r *results) markdown(cases []testCase) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Set `%s`, %d repetition(s) of %gs per run, interleaved; median (min–max). ", r.Set, r.Params.Reps, r.Params.DurS)
	fmt.Fprintf(&b, "Run %s, took %s.", r.Started.Format("2006-01-02 15:04 UTC"), r.Finished.Sub(r.Started).Round(time.Second))
	if r.Label != "" {
		fmt.Fprintf(&b, " **%s.**", r.Label)
	}
	b.WriteString(" † = no valid run (achieved rate below target or errors): numbers from the invalid runs.\n\n")
	var order []string
	variants := map[string][]testCase{}
	for _, c := range cases {
		if _, ok := variants[c.scenario]; !ok {
			order = append(order, c.scenario)
		}
		variants[c.scenario] = append(variants[c.scenario], c)
	}
	for _, sc := range order {
		cols := columns[sc]
		fmt.Fprintf(&b, "### %s — %s\n\n| case | target |", sc, titles[sc])
		for _, c := range cols {
			head := c.head
			switch c.metric {
			case "rss_conns1_mb":
				head = fmt.Sprintf(head, r.Params.Idle[0])
			case "rss_conns2_mb":
				head = fmt.Sprintf(head, r.Params.Idle[1])
			}
			b.WriteString(" " + head + " |")
		}
		b.WriteString("\n| --- | --- |" + strings.Repeat(" ---: |", len(cols)) + "\n")
		for _, c := range variants[sc] {
			for _, t := range c.targets {
				k := key{sc, c.variant, t}
				fmt.Fprintf(&b, "| %s | %s |", c.variant, t)
				if why := r.whyMissing(k, c); why != "" {
					fmt.Fprintf(&b, " %s |%s\n", why, strings.Repeat(" |", len(cols)-1))
					continue
				}
				for _, col := range cols {
					b.WriteString(" " + r.cell(k, col) + " |")
				}
				b.WriteString("\n")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("### B2 — mTLS sidecar pair\n\nNot yet: Outrigger has TLS termination but no mTLS between sidecars yet; the slot is filled when `tls: spiffe` lands (Consul's connect proxy pair is the peer).\n\n")
	b.WriteString(r.ratios(order, variants))
	b.WriteString("### Environment\n\n| | |\n| --- | --- |\n")
	for _, kv := range r.Env {
		fmt.Fprintf(&b, "| %s | %s |\n", kv[0], strings.ReplaceAll(kv[1], "|", "\\|"))
	}
	b.WriteString("\n")
	return b.String()
}

// whyMissing says why a row has no numbers, or "" when it has some.
func (r *results) whyMissing(k key, c testCase) string {
	for _, s := range r.Summary {
		if s.Scenario == k.scenario && s.Variant == k.variant && s.Target == k.target {
			return ""
		}
	}
	if !supports(k.target, c.proto) {
		switch k.target {
		case "caddy":
			return "n/a: Caddy has no L4 proxy without plugins"
		case "consul":
			return "n/a: Consul's built-in proxy is L4 only"
		}
	}
	if why := r.Skipped[k.target]; why != "" {
		return "not run: " + why
	}
	for _, x := range r.Runs {
		if x.Scenario == k.scenario && x.Variant == k.variant && x.Target == k.target && x.Error != "" {
			e := x.Error
			if len(e) > 160 {
				e = "…" + e[len(e)-160:] // the end says most: the ALERT, the exit
			}
			return "failed: " + strings.ReplaceAll(strings.ReplaceAll(e, "|", "/"), "\n", " ")
		}
	}
	return "not run"
}

// primary is the headline metric of each scenario, and whether lower is better.
var primary = map[string]struct {
	metric string
	lower  bool
}{
	"B1": {"gbps", false}, "B3": {"p50_us", true}, "B4": {"p50_us", true}, "B6": {"rps", false},
	"B10": {"rss_conns2_mb", true},
}

// ratios is the headline: Outrigger against direct and against each peer.
func (r *results) ratios(order []string, variants map[string][]testCase) string {
	peers := []string{"haproxy", "nginx", "caddy", "consul", "go-rp"}
	var b strings.Builder
	b.WriteString("### Ratios\n\nOutrigger's headline number divided by the other's (throughput: above 1 is better for Outrigger; latency and memory: below 1 is better).\n\n")
	b.WriteString("| case | metric | Outrigger ÷ direct |")
	for _, p := range peers {
		b.WriteString(" Outrigger ÷ " + p + " |")
	}
	b.WriteString("\n| --- | --- | ---: |" + strings.Repeat(" ---: |", len(peers)) + "\n")
	for _, sc := range order {
		for _, c := range variants[sc] {
			pm, ok := primary[sc]
			if sc == "B7" {
				pm.metric, ok = "rps", true
				if strings.HasPrefix(c.variant, "ghz") {
					pm.metric, pm.lower = "p50_us", true
				}
			}
			if !ok {
				continue
			}
			o, ok := r.get(key{sc, c.variant, "outrigger"}, pm.metric)
			if !ok {
				continue
			}
			fmt.Fprintf(&b, "| %s %s | %s |", sc, c.variant, pm.metric)
			for _, t := range append([]string{"direct"}, peers...) {
				s, ok := r.get(key{sc, c.variant, t}, pm.metric)
				if !ok || s.Median == 0 || !slices.Contains(c.targets, t) {
					b.WriteString(" – |")
					continue
				}
				fmt.Fprintf(&b, " %.2f |", o.Median/s.Median)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
	return b.String()
}

// smokeCheck lists the cases and targets that produced no numbers.
func (r *results) smokeCheck(cases []testCase, h *harness) []string {
	var problems []string
	for _, c := range cases {
		for _, t := range h.targetsOf(c) {
			found := false
			for _, x := range r.Runs {
				if x.Scenario == c.scenario && x.Variant == c.variant && x.Target == t && x.Error == "" && len(x.Metrics) > 0 {
					found = true
				}
			}
			if !found {
				why := "no run"
				for _, x := range r.Runs {
					if x.Scenario == c.scenario && x.Variant == c.variant && x.Target == t && x.Error != "" {
						why = x.Error
					}
				}
				problems = append(problems, fmt.Sprintf("%s %s %s: %s", c.scenario, c.variant, t, why))
			}
		}
	}
	return problems
}

// environment records what the numbers were measured on.
func environment(h *harness) [][2]string {
	first := func(argv ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				return l
			}
		}
		return "?"
	}
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.*)`).FindSubmatch(b); m != nil {
			cpu = string(m[1])
		}
	}
	osName := "?"
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		if m := regexp.MustCompile(`PRETTY_NAME="(.*)"`).FindSubmatch(b); m != nil {
			osName = string(m[1])
		}
	}
	env := [][2]string{
		{"CPU", fmt.Sprintf("%s, %d logical CPUs", cpu, runtime.NumCPU())},
		{"kernel", first("uname", "-r")},
		{"OS", osName},
		{"Go", first("go", "version")},
		{"Outrigger", first(h.bin+"/outrigger", "version") + " (" + first("git", "describe", "--tags", "--always", "--dirty") + ")"},
		{"HAProxy", first("haproxy", "-v")},
		{"nginx", first("nginx", "-v")},
		{"Caddy", first("caddy", "version")},
		{"iperf3", first("iperf3", "--version")},
		{"h2load", first("h2load", "--version")},
		{"wrk", first("wrk", "-v")},
		{"fortio", modVersion(h.toolsBin + "/fortio")},
		{"ghz", modVersion(h.toolsBin + "/ghz")},
	}
	if _, err := os.Stat(h.toolsBin + "/consul"); err == nil {
		env = append(env, [2]string{"Consul", first(h.toolsBin+"/consul", "version") + " (" + modVersion(h.toolsBin+"/consul") + ")"})
	}
	env = append(env,
		[2]string{"method", "pinned: load generator and backend on CPU 0, proxy on CPU 1, one worker each (GOMAXPROCS=1, nbthread 1, worker_processes 1); unpinned: no taskset, one worker per core. Proxy CPU from /proc/PID/stat utime+stime and peak RSS from VmHWM (reset with clear_refs at the window start), summed over the proxy's processes"},
		[2]string{"command", "benchrun " + strings.Join(os.Args[1:], " ")},
	)
	return env
}

const docsHead = `# Benchmarks

Outrigger is measured beside no proxy at all (**direct**) and beside peer
proxies — HAProxy, nginx, Caddy (from Debian's packages) and Consul's built-in
connect proxy (built from its Go module) — on the same client, backend and
payload, in one run, interleaved (direct, Outrigger, peers, direct, …). On a
shared machine only these side-by-side ratios mean anything; absolute numbers
move with whatever else the machine is doing.

` + "```sh" + `
make bench         # the quick set: 3 repetitions of 4 s, about 11 minutes
make bench-full    # 5 repetitions of 15 s and the full connection sweep 1…64: about 1.5 hours
make bench-smoke   # 1 repetition of 2 s of everything, about 2 minutes; CI runs it; asserts only that numbers came out
make bench-go      # Go micro-benchmarks of the hot path
` + "```" + `

The harness is ` + "`bench/cmd/benchrun`" + `; ` + "`bench/install.sh`" + ` installs the
tools on first use (Debian packages, fortio and ghz with ` + "`go install`" + ` into
` + "`~/.cache/outrigger-bench/bin`" + `, Consul built from its module there: about
3 minutes the first time, plus about 12 for Consul, which ` + "`make bench-smoke`" + `
skips building and uses only when cached). ` + "`BENCHFLAGS`" + ` passes options
through (` + "`-scenarios B4,B6`, `-targets direct,outrigger,nginx`, `-reps 5`, `-label`" + `). Every
run holds ` + "`/tmp/outrigger-bench.lock`" + `, uses ports 18000–18999 on loopback
only, and writes ` + "`bench/results/<time>-<set>.{json,md}`" + ` with the raw tool
outputs and generated proxy configs under ` + "`bench/results/<time>-<set>/raw/`" + `.

## Method

- **Pinned** (latency: B3, B4, B9, B7 ghz; and B6 pinned, the sidecar's
  case): the load generator and the backend run on CPU 0
  (` + "`taskset -c 0`" + `), the proxy on CPU 1, with one worker:
  ` + "`GOMAXPROCS=1`" + ` for Outrigger and Caddy, ` + "`nbthread 1`" + ` for HAProxy,
  ` + "`worker_processes 1`" + ` for nginx. **Unpinned** (capacity: B1, B6, B7
  h2load, B10): no pinning, one worker per core.
- Fixed-rate runs (1000 req/s, fortio ` + "`-uniform -r 0.00001`" + `, ghz ` + "`--rps`" + `)
  are valid only if the achieved rate is within 3% of the target (fortio's
  own plan of whole calls per connection) and there
  were no errors; otherwise they are marked † and kept out of the median when
  any valid run exists.
- The proxy's CPU is utime+stime from ` + "`/proc/PID/stat`" + ` (all its processes),
  its peak RSS is ` + "`VmHWM`" + ` from ` + "`/proc/PID/status`" + ` after resetting it at
  the start of the window (` + "`clear_refs`" + `); both cover the load's window.
- Each run starts fresh backends (` + "`examples/echo`" + `: pure TCP echo,
  1 KB HTTP bodies, gRPC health; or an iperf3 server) and a fresh proxy with
  a generated config, checks that a request goes through, then measures.
- Peers are configured fairly: keep-alive to upstreams (HAProxy
  ` + "`http-reuse always`" + `, nginx ` + "`keepalive`" + ` with HTTP/1.1 upstreams, Caddy
  keep-alive pools), no access logs, round robin, raised request-per-connection
  limits.
- "added" latency is the target's median (and min/max) minus direct's median;
  "share of direct" divides by direct's median. B7's spread is min/max of the
  requests each of the three backends answered (1 = even); upstream conns are
  ESTABLISHED sockets to the backend ports sampled mid-run.
- **B9 beside outrigger**: each feature's target (` + "`outrigger-res`" + `,
  ` + "`-trace0`, `-trace100`" + `) runs at the same time as Outrigger without the
  feature, one backend, both proxies on CPU 1, each with its own fortio
  at 1000 req/s from CPU 0 for 15 s (2 s in smoke), starting order
  swapped every repetition; "vCPU vs outrigger beside it" is the
  target's CPU per 1k requests over the other's in that window. One
  after the other, as B9's first rows run, the plain proxy alone moves by
  ±10–30% from one minute to the next on this host; side by side both
  see the same machine, and the pairs agree within a point or two. Their
  latencies are of two proxies sharing a core, not comparable with the
  other rows.
- **A/B pairs** (` + "`bench/abpair.sh BIN_A:MODE_A BIN_B:MODE_B`" + `, modes
  ` + "`plain`, `trace0`, `trace100`" + `): two Outrigger setups side by side on
  CPU 1, each at 1000 req/s from its own fortio on CPU 0, their CPU per
  1k requests and the ratio per pair, places swapped every pair, and the
  median: B9's beside rows by hand, for comparing two builds. Needs
  ` + "`make build`" + ` and ` + "`bench/install.sh`" + `; shares benchrun's lock.
- Consul's connect proxy has no plaintext single-hop mode: its rows are a
  **pair** of proxies (client side → mTLS → server side → backend), and the
  CPU and RSS of both count. Compare it with that in mind.

## Latest results

`

// writeDocs replaces the generated parts of the benchmarks page and keeps a
// hand-written "## Findings" section (profiles, bottlenecks) where it is.
func writeDocs(path, md, stamp string) error {
	head := docsHead
	if old, err := os.ReadFile(path); err == nil {
		s := string(old)
		i, j := strings.Index(s, "\n## Findings\n"), strings.Index(s, "\n## Latest results\n")
		if i >= 0 && j > i {
			head = strings.TrimSuffix(docsHead, "## Latest results\n\n") + s[i+1:j+1] + "## Latest results\n\n"
		}
	}
	return os.WriteFile(path, []byte(head+"From `bench/results/"+stamp+".json`.\n\n"+md), 0o644)
}

// modVersion is the main module and version a Go binary was built from.
func modVersion(bin string) string {
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return "?"
	}
	path, mod := "", ""
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "mod" {
			mod = f[1] + " " + f[2]
		}
		if len(f) >= 2 && f[0] == "path" {
			path = f[1]
		}
	}
	if mod == "" || strings.Contains(mod, "(devel)") {
		return path
	}
	return mod
}
