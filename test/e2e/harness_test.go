package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bin holds the binaries built once for the whole package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outrigger-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	code := func() int {
		defer os.RemoveAll(dir)
		for _, pkg := range []string{"cmd/outrigger", "examples/echo"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), "./"+pkg)
			cmd.Dir = filepath.Join("..", "..")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// waitLimit bounds every wait in these tests; it only decides when to give
// up, never what counts as fast enough.
const waitLimit = 15 * time.Second

// process is a started binary whose output is kept for failure messages.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(t *testing.T, name string, args ...string) *process {
	t.Helper()
	p := &process{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(bin, name), args...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %s %s:\n%s", name, strings.Join(args, " "), p.output())
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *process) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		p.t.Fatalf("process did not exit within %v", waitLimit)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.err)
	return -1
}

func (p *process) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// demo copies examples/local into a temporary directory so the test can
// edit its services file, and starts the three echo backends.
func demo(t *testing.T) (dir string) {
	t.Helper()
	requireFreePorts(t)
	dir = t.TempDir()
	for _, f := range []string{"outrigger.yaml", "services.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "local", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		addr := fmt.Sprintf("127.0.0.1:910%d", i)
		start(t, "echo", "-name", fmt.Sprintf("echo-%d", i), "-listen", addr)
		waitDial(t, addr)
	}
	for _, b := range []struct{ name, addr string }{{"web-1", "127.0.0.1:9201"}, {"web-2", "127.0.0.1:9202"}, {"api-1", "127.0.0.1:9301"}} {
		start(t, "echo", "-name", b.name, "-listen", b.addr, "-mode", "http")
		waitDial(t, b.addr)
	}
	for _, b := range []struct{ name, addr string }{{"grpc-1", "127.0.0.1:9401"}, {"grpc-2", "127.0.0.1:9402"}} {
		start(t, "echo", "-name", b.name, "-listen", b.addr, "-mode", "grpc")
		waitDial(t, b.addr)
	}
	return dir
}

// demoPorts are the fixed ports of examples/local; the tests check they are
// free first, so a stray process cannot answer in place of the one under test.
var demoPorts = []string{"9000", "9080", "9090", "15000", "9101", "9102", "9103", "9201", "9202", "9301", "9401", "9402"}

func requireFreePorts(t *testing.T) {
	t.Helper()
	for _, port := range demoPorts {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatalf("demo port %s is taken by another process (%v); stop it and run the tests again", port, err)
		}
		ln.Close()
	}
}

func startOutrigger(t *testing.T, dir string) *process {
	t.Helper()
	p := start(t, "outrigger", "run", "-c", filepath.Join(dir, "outrigger.yaml"), "--log-level", "debug")
	deadline := time.Now().Add(waitLimit)
	for {
		code, _ := getJSON(t, "http://127.0.0.1:15000/ready", nil)
		if code == http.StatusOK {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("outrigger exited before it was ready:\n%s", p.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("outrigger not ready within %v", waitLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitDial(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening within %v: %v", addr, waitLimit, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// getJSON fetches url; code is 0 when nothing answered.
func getJSON(t *testing.T, url string, v any) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("%s: %v in %s", url, err, body)
		}
	}
	return resp.StatusCode, string(body)
}

// conn is a client connection through the proxy to one echo backend.
type conn struct {
	net.Conn
	r       *bufio.Reader
	backend string // from the greeting
}

// dial connects through addr and reads the backend's greeting.
func dial(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitLimit))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting through %s: %v", addr, err)
	}
	return &conn{Conn: c, r: r, backend: strings.Fields(line)[0]}
}

// roundTrip sends a line and expects it echoed back.
func (c *conn) roundTrip(t *testing.T, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write to %s: %v", c.backend, err)
	}
	got, err := c.r.ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo from %s = %q, %v; want %q", c.backend, got, err, msg)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // as editors save
		t.Fatal(err)
	}
}
