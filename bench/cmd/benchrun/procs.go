package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// proc is one process the harness started: a proxy, a backend or a helper.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs argv with its output in dir/name.log. cpu, when not empty,
// pins it with taskset (which execs, so the PID is the program's own).
func start(dir, name, cpu string, env []string, argv ...string) (*proc, error) {
	if cpu != "" {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after a grace period.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// tail returns the last lines of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}

// tree is the PID and all of its descendants (nginx's workers, for one).
func tree(root int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := statFields(string(b))
		if len(f) > 2 {
			pp, _ := strconv.Atoi(f[1])
			parent[pid] = pp
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		for pid, pp := range parent {
			if pp == out[i] {
				out = append(out, pid)
			}
		}
	}
	return out
}

// statFields splits /proc/PID/stat after the command name (which may hold
// spaces): fields[0] is the state, fields[1] the parent PID, fields[11] and
// fields[12] utime and stime.
func statFields(s string) []string {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// cpuSeconds is the user+system CPU time of the processes, in seconds.
func cpuSeconds(pids []int) float64 {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := statFields(string(b))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return float64(ticks) / clockTicks
}

// memKB sums a /proc/PID/status field (VmRSS, VmHWM) over the processes.
func memKB(pids []int, field string) float64 {
	var total float64
	for _, pid := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
				n, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
				total += n
			}
		}
		f.Close()
	}
	return total
}

// resetPeak restarts VmHWM at the current RSS (clear_refs 5), so the peak
// read at the end covers only the measured window.
func resetPeak(pids []int) {
	for _, pid := range pids {
		os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
	}
}

// meter samples CPU time and peak RSS of a set of processes over a window.
type meter struct {
	pids  []int
	cpu0  float64
	start time.Time
}

func startMeter(roots ...*proc) *meter {
	var pids []int
	for _, p := range roots {
		pids = append(pids, tree(p.pid())...)
	}
	resetPeak(pids)
	return &meter{pids: pids, cpu0: cpuSeconds(pids), start: time.Now()}
}

// stop returns the cores used (CPU seconds per wall second) and the peak
// RSS in MB over the window.
func (m *meter) stop() (cores, rssMB float64) {
	cpu := cpuSeconds(m.pids) - m.cpu0
	wall := time.Since(m.start).Seconds()
	return cpu / wall, memKB(m.pids, "VmHWM") / 1024
}

// waitPort waits until addr accepts TCP connections.
func waitPort(ctx context.Context, addr string, procs ...*proc) error {
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		for _, p := range procs {
			if p.exited() {
				return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.tail())
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not accepting: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runTool runs a load generator or client with a hard time limit, saving its
// output to raw; it returns the output.
func runTool(ctx context.Context, limit time.Duration, raw, cpu string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if cpu != "" {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	os.WriteFile(raw, append([]byte("$ "+strings.Join(argv, " ")+"\n"), out...), 0o644)
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s: no result within %v", argv[0], limit)
	}
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", argv[0], err, lastLine(string(out)))
	}
	return string(out), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
