// Command benchrun is Outrigger's benchmark harness: it runs every scenario
// direct (no proxy), through Outrigger and through peer proxies (HAProxy,
// nginx, Caddy, Consul's built-in connect proxy) on the same client, backend
// and payload, interleaved, and writes the results as JSON and a Markdown
// table.
//
//	benchrun -set quick                 # make bench: 3 repetitions, ~15 minutes
//	benchrun -set full                  # make bench-full: 5 repetitions, longer runs
//	benchrun -set smoke                 # make bench-smoke: 1 repetition, seconds each; asserts numbers exist
//
// It installs its tools on first use (bench/install.sh), holds
// /tmp/outrigger-bench.lock while it measures, uses ports 18000-18999 on
// loopback only, and bounds every load in count and time. See
// docs/benchmarks.md for the method.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/outrigger-mesh/outrigger/bench/internal/otlpsink"
)

// params are the knobs of a set.
type params struct {
	Set   string        `json:"set"`
	Reps  int           `json:"repetitions"`
	Dur   time.Duration `json:"-"`
	DurS  float64       `json:"seconds_per_run"`
	Sweep []int         `json:"b4_connection_sweep"`
	Idle  []int         `json:"b10_idle_connections"`
	// PairDur is how long B9's side-by-side runs load each proxy: long
	// enough that CPU time, counted in 10 ms ticks, resolves a per cent
	PairDur time.Duration `json:"-"`
}

var sets = map[string]params{
	"smoke": {Reps: 1, Dur: 2 * time.Second, Sweep: []int{1, 64}, Idle: []int{100, 1000}, PairDur: 2 * time.Second},
	"quick": {Reps: 3, Dur: 4 * time.Second, Sweep: []int{1, 16, 64}, Idle: []int{1000, 10000}, PairDur: 15 * time.Second},
	"full":  {Reps: 5, Dur: 15 * time.Second, Sweep: []int{1, 2, 4, 8, 16, 32, 64}, Idle: []int{1000, 10000}, PairDur: 15 * time.Second},
}

type harness struct {
	root     string // repository root
	bin      string // bin/ with outrigger and echo
	toolsBin string // fortio, ghz, consul
	out      string // this run's results directory
	cores    int
	p        params
	targets  map[string]bool // peers selected by -targets
	skip     map[string]string
	sink     *otlpsink.Sink // B9's tracing targets export here; started on first use
}

func main() {
	set := flag.String("set", "quick", "smoke, quick or full")
	outDir := flag.String("out", "bench/results", "directory for results (a timestamped subdirectory holds the raw outputs)")
	docs := flag.String("docs", "", "also write the table and environment to this Markdown file (docs/benchmarks.md)")
	only := flag.String("scenarios", "", "comma-separated scenario IDs to run (default all)")
	targets := flag.String("targets", "direct,outrigger,haproxy,nginx,caddy,consul,go-rp", "comma-separated targets")
	reps := flag.Int("reps", 0, "repetitions (default: the set's)")
	noInstall := flag.Bool("no-install", false, "do not run bench/install.sh")
	label := flag.String("label", "", "a note on the conditions (\"busy machine\"), shown with the table")
	render := flag.String("render", "", "measure nothing: re-render -docs (or print) the tables of this results JSON")
	flag.Parse()
	if *render != "" {
		rerender(*render, *docs)
		return
	}

	p, ok := sets[*set]
	if !ok {
		fatalf("unknown -set %q: want smoke, quick or full", *set)
	}
	p.Set = *set
	if *reps > 0 {
		p.Reps = *reps
	}
	p.DurS = p.Dur.Seconds()

	root, err := os.Getwd()
	if err != nil {
		fatalf("%v", err)
	}
	cache := os.Getenv("OUTRIGGER_BENCH_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "outrigger-bench")
	}
	h := &harness{
		root: root, bin: filepath.Join(root, "bin"), toolsBin: filepath.Join(cache, "bin"),
		cores: runtime.NumCPU(), p: p, targets: map[string]bool{}, skip: map[string]string{},
	}
	for _, t := range strings.Split(*targets, ",") {
		h.targets[strings.TrimSpace(t)] = true
	}
	if !*noInstall {
		arg := []string{}
		if *set != "smoke" && h.targets["consul"] {
			arg = append(arg, "consul") // heavy first build: not in CI's smoke run
		}
		cmd := exec.Command(filepath.Join(root, "bench", "install.sh"), arg...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fatalf("bench/install.sh: %v", err)
		}
	}
	for _, b := range []string{"outrigger", "echo", "rpbaseline"} {
		if _, err := os.Stat(filepath.Join(h.bin, b)); err != nil {
			fatalf("%s/%s missing: run make build first", h.bin, b)
		}
	}
	if h.targets["consul"] {
		if _, err := os.Stat(filepath.Join(h.toolsBin, "consul")); err != nil {
			h.skip["consul"] = "Consul binary not built (bench/install.sh consul builds it; the smoke set skips the heavy build)"
		}
	}
	raiseNofile()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	unlock := lock("/tmp/outrigger-bench.lock")
	defer unlock()

	// Absolute, since the proxies run with their own working directories
	// (nginx resolves paths against its prefix).
	if *outDir, err = filepath.Abs(*outDir); err != nil {
		fatalf("%v", err)
	}
	started := time.Now().UTC()
	stamp := started.Format("20060102-150405") + "-" + *set
	h.out = filepath.Join(*outDir, stamp)
	if err := os.MkdirAll(filepath.Join(h.out, "raw"), 0o755); err != nil {
		fatalf("%v", err)
	}
	res := &results{Set: *set, Label: *label, Started: started, Params: p, Env: environment(h), Skipped: h.skip}
	var cases []testCase
	for _, c := range h.cases() {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), c.scenario) {
			continue
		}
		cases = append(cases, c)
	}
	res.Runs = h.runAll(ctx, cases)
	res.Finished = time.Now().UTC()
	res.summarize(cases)

	md := res.markdown(cases)
	must(writeJSON(filepath.Join(h.out, "results.json"), res))
	must(os.WriteFile(filepath.Join(h.out, "results.md"), []byte(md), 0o644))
	must(writeJSON(filepath.Join(*outDir, stamp+".json"), res))
	must(os.WriteFile(filepath.Join(*outDir, stamp+".md"), []byte(md), 0o644))
	if *docs != "" && ctx.Err() == nil { // an interrupted run does not replace the published table
		must(writeDocs(*docs, md, stamp))
	}
	fmt.Println(md)
	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	fmt.Fprintf(os.Stderr, "benchrun: results in %s.{json,md}, raw outputs in %s (%s)\n",
		rel(filepath.Join(*outDir, stamp)), rel(filepath.Join(h.out, "raw")), res.Finished.Sub(started).Round(time.Second))
	if ctx.Err() != nil {
		os.Exit(130)
	}
	if *set == "smoke" {
		if problems := res.smokeCheck(cases, h); len(problems) > 0 {
			fmt.Fprintln(os.Stderr, "bench-smoke FAILED: scenarios without numbers:")
			for _, p := range problems {
				fmt.Fprintln(os.Stderr, "  "+p)
			}
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "bench-smoke: every scenario produced numbers")
	}
}

// rerender rebuilds the Markdown of a saved run, e.g. after the page's text
// changed.
func rerender(path, docs string) {
	b, err := os.ReadFile(path)
	if err != nil {
		fatalf("%v", err)
	}
	var res results
	if err := json.Unmarshal(b, &res); err != nil {
		fatalf("%s: %v", path, err)
	}
	res.Params.Dur = time.Duration(res.Params.DurS * float64(time.Second))
	h := &harness{p: res.Params}
	md := res.markdown(h.cases())
	if docs == "" {
		fmt.Println(md)
		return
	}
	must(writeDocs(docs, md, strings.TrimSuffix(filepath.Base(path), ".json")))
}

// runAll runs every case for every repetition and target, interleaving the
// targets (direct, outrigger, peers, direct, outrigger, peers, ...). Each
// repetition starts one target later (outrigger, peers, direct; then
// peers, direct, outrigger; ...), so that no target always runs in the
// same place, right after the same one: a drift of the machine within a
// repetition would otherwise count as a difference of the targets (B9's
// few percent were within it).
func (h *harness) runAll(ctx context.Context, cases []testCase) []run {
	var runs []run
	total := 0
	for _, c := range cases {
		total += len(h.targetsOf(c))
	}
	total *= h.p.Reps
	n := 0
	for rep := 1; rep <= h.p.Reps; rep++ {
		for _, c := range cases {
			ts := h.targetsOf(c)
			for i := range ts {
				t := ts[(i+rep-1)%len(ts)]
				if ctx.Err() != nil {
					return runs
				}
				n++
				t0 := time.Now()
				r := h.runOne(ctx, c, t, rep)
				status := "ok"
				switch {
				case r.Error != "":
					status = "ERROR " + r.Error
				case !r.Valid:
					status = "invalid: " + r.Note
				}
				fmt.Fprintf(os.Stderr, "[%d/%d] %s %s %s rep %d: %s (%s)\n", n, total, c.scenario, c.variant, t, rep,
					status, time.Since(t0).Round(100*time.Millisecond))
				runs = append(runs, r)
			}
		}
	}
	return runs
}

func (h *harness) targetsOf(c testCase) []string {
	var ts []string
	for _, t := range c.targets {
		sel := h.targets[t] || (strings.HasPrefix(t, "outrigger-") && h.targets["outrigger"]) // B9's variants come with outrigger
		if sel && h.skip[t] == "" && supports(t, c.proto) {
			ts = append(ts, t)
		}
	}
	return ts
}

// run is one measurement.
type run struct {
	Scenario string             `json:"scenario"`
	Variant  string             `json:"variant"`
	Target   string             `json:"target"`
	Rep      int                `json:"rep"`
	Pinned   bool               `json:"pinned"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	Valid    bool               `json:"valid"`
	Note     string             `json:"note,omitempty"`
	Error    string             `json:"error,omitempty"`
	Raw      string             `json:"raw"`
}

func (h *harness) runOne(ctx context.Context, c testCase, target string, rep int) run {
	r := run{Scenario: c.scenario, Variant: c.variant, Target: target, Rep: rep, Pinned: c.pinned}
	dir := filepath.Join(h.out, "raw", fmt.Sprintf("%s-%s", c.scenario, slug(c.variant)), fmt.Sprintf("%s-rep%d", target, rep))
	r.Raw = strings.TrimPrefix(dir, h.root+"/")
	fail := func(err error) run { r.Error = err.Error(); return r }
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	backends, addrs, err := h.startBackends(ctx, dir, c.backend, c.nBackend, loadCPU(c.pinned))
	if err != nil {
		return fail(err)
	}
	defer func() {
		for _, b := range backends {
			b.stop()
		}
	}()
	if c.beside != "" {
		return h.runBeside(ctx, c, r, dir, addrs)
	}
	px, err := h.startProxy(ctx, target, route{proto: c.proto, backends: addrs}, c.pinned, dir)
	if err != nil {
		return fail(err)
	}
	defer px.stop()
	if err := probe(ctx, c, px.addr); err != nil {
		return fail(fmt.Errorf("%s: probe through %s: %w", target, px.addr, err))
	}
	rc := &runCtx{h: h, addr: px.addr, dir: dir, proxy: px, backends: addrs, mark: func() {}}
	var m *meter
	if len(px.counted) > 0 {
		m = startMeter(px.counted...)
		rc.mark = func() { m = startMeter(px.counted...) }
	}
	metrics, valid, note, err := c.load(ctx, rc)
	if m != nil && metrics != nil && c.scenario != "B10" {
		cores, rss := m.stop()
		metrics["proxy_cores"], metrics["rss_mb"] = cores, rss
		if rps := metrics["rps"]; rps > 0 {
			metrics["vcpu_per_krps"] = cores / (rps / 1000)
			if cores > 0 {
				metrics["rps_per_core"] = rps / cores
			}
		}
	}
	if err != nil {
		return fail(err)
	}
	if c.nBackend > 1 && target != "direct" {
		px.stop() // so the backends see their clients go
		for _, b := range backends {
			b.stop()
		}
		if s, ok := spread(backends); ok {
			metrics["spread"] = s
		}
	}
	r.Metrics, r.Valid, r.Note = metrics, valid, note
	return r
}

// runBeside runs r's target and c.beside side by side (runOne has
// started the backend, addrs, and made dir): both
// proxies pinned to CPU 1, each driven by its own load from CPU 0 over the
// same window. The run's metrics are target's, plus c.beside's CPU per 1k
// requests (beside_vcpu_per_krps) and target's over it, in per cent
// (vcpu_over_beside). Measured one after the other, as the other
// scenarios are, a difference of a few per cent drowns in what a shared
// virtual machine's host does from one minute to the next (B9's plain
// Outrigger alone spread over ±30%); side by side, both proxies see the
// same noise and the ratio holds within a point or two. Every other
// repetition starts them in the other order.
func (h *harness) runBeside(ctx context.Context, c testCase, r run, dir string, addrs []string) run {
	fail := func(err error) run { r.Error = err.Error(); return r }
	type side struct {
		target  string
		rc      *runCtx
		m       *meter
		metrics map[string]float64
		valid   bool
		note    string
		err     error
	}
	sides := []*side{{target: r.Target}, {target: c.beside}}
	order := sides
	if r.Rep%2 == 0 {
		order = []*side{sides[1], sides[0]}
	}
	for _, s := range order {
		sdir := filepath.Join(dir, s.target)
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return fail(err)
		}
		px, err := h.startProxy(ctx, s.target, route{proto: c.proto, backends: addrs}, c.pinned, sdir)
		if err != nil {
			return fail(err)
		}
		defer px.stop()
		if err := probe(ctx, c, px.addr); err != nil {
			return fail(fmt.Errorf("%s: probe through %s: %w", s.target, px.addr, err))
		}
		s.rc = &runCtx{h: h, addr: px.addr, dir: sdir, proxy: px, backends: addrs}
	}
	var wg sync.WaitGroup
	for _, s := range order {
		s.m = startMeter(s.rc.proxy.counted...)
		s.rc.mark = func() { s.m = startMeter(s.rc.proxy.counted...) }
	}
	for _, s := range order {
		wg.Go(func() { s.metrics, s.valid, s.note, s.err = c.load(ctx, s.rc) })
	}
	wg.Wait()
	var notes []string
	for _, s := range sides {
		cores, rss := s.m.stop()
		if s.err != nil {
			return fail(fmt.Errorf("%s: %w", s.target, s.err))
		}
		s.metrics["proxy_cores"], s.metrics["rss_mb"] = cores, rss
		if rps := s.metrics["rps"]; rps > 0 {
			s.metrics["vcpu_per_krps"] = cores / (rps / 1000)
		}
		if s.note != "" {
			notes = append(notes, s.target+": "+s.note)
		}
	}
	t, b := sides[0].metrics, sides[1].metrics
	if b["vcpu_per_krps"] > 0 {
		t["beside_vcpu_per_krps"] = b["vcpu_per_krps"]
		t["vcpu_over_beside"] = 100 * (t["vcpu_per_krps"]/b["vcpu_per_krps"] - 1)
	}
	r.Metrics, r.Valid, r.Note = t, sides[0].valid && sides[1].valid, strings.Join(notes, "; ")
	return r
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

// lock takes the benchmark lock shared with other measurements (flock(1)
// on the same file sees it).
func lock(path string) func() {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		fatalf("%v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(os.Stderr, "benchrun: waiting for %s (another measurement is running)\n", path)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			fatalf("flock: %v", err)
		}
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }
}

func raiseNofile() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	// B10 holds 10k client connections, and the proxies one or two
	// descriptors for each; root may raise the hard limit too.
	want := syscall.Rlimit{Cur: 1 << 17, Max: 1 << 17}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func must(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", a...)
	os.Exit(1)
}
