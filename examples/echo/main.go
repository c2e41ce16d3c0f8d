// Command echo is the small demo backend that Outrigger's demos and tests
// run behind the proxy.
//
// In gRPC mode it serves the standard health service and names itself in
// an x-echo-name response header.
//
// In TCP mode it greets each connection with one line naming itself
// ("echo-1 hello from 127.0.0.1:9101") and then echoes every byte it
// receives; when the client half-closes, it finishes echoing and closes. In
// HTTP mode (HTTP/1.1 and h2c) it answers every request with JSON naming itself and describing
// the request it saw. Each connection runs in its own goroutine; the process
// stops on SIGTERM or SIGINT and then logs how many HTTP requests and gRPC
// calls it answered.
//
// For benchmarks, -greet=false makes TCP mode a pure echo and -body N makes
// HTTP mode answer every request with N fixed bytes instead of JSON.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Benchmark settings, set from flags before serving starts (atomic so tests
// can change them while servers from other tests wind down).
var (
	noGreet   atomic.Bool            // tcp mode: skip the greeting line, a pure echo
	fixedBody atomic.Pointer[[]byte] // http mode: answer with these bytes instead of JSON
	served    atomic.Int64           // HTTP requests and gRPC calls answered
)

func main() {
	name := flag.String("name", "echo", "the name this backend reports in greetings and answers")
	listen := flag.String("listen", "127.0.0.1:9101", "address to listen on")
	mode := flag.String("mode", "tcp", "tcp (greet, then echo bytes), http (answer JSON describing the request) or grpc (the grpc.health.v1 service)")
	dial := flag.String("dial", "", "client mode: connect to this address -n times and print each greeting, then exit")
	count := flag.Int("n", 1, "client mode: how many connections to open, one after another")
	greet := flag.Bool("greet", true, "tcp mode: greet before echoing; false makes a pure echo (for benchmarks)")
	body := flag.Int("body", 0, "http mode: answer every request with this many fixed bytes instead of JSON (for benchmarks)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: echo [-name N] [-listen ADDR] [-mode tcp|http]\n"+
			"       echo -dial ADDR [-n COUNT]\n\n"+
			"A demo backend: in tcp mode it sends one greeting line naming itself and\n"+
			"echoes what it receives; in http mode it answers JSON naming itself; in grpc\n"+
			"mode it serves grpc.health.v1 and names itself in an x-echo-name header.\n"+
			"With -dial it is a client: it prints the greeting of each of COUNT connections.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	noGreet.Store(!*greet)
	if *body > 0 {
		b := make([]byte, *body)
		for i := range b {
			b[i] = 'a' + byte(i%26)
		}
		fixedBody.Store(&b)
	}
	if *dial != "" {
		if err := greetings(os.Stdout, *dial, *count); err != nil {
			fmt.Fprintf(os.Stderr, "echo: %v\n", err)
			os.Exit(1)
		}
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo: %v\n", err)
		os.Exit(1)
	}
	slog.Info("echo listening", "name", *name, "addr", ln.Addr().String(), "mode", *mode)
	switch *mode {
	case "tcp":
		err = serveTCP(ctx, ln, *name)
	case "http":
		err = serveHTTP(ctx, ln, *name)
	case "grpc":
		err = serveGRPC(ctx, ln, *name)
	default:
		err = fmt.Errorf("unknown -mode %q: want tcp, http or grpc", *mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo: %v\n", err)
		os.Exit(1)
	}
	slog.Info("echo stopped", "name", *name, "requests", served.Load())
}

// serveTCP greets and echoes on every connection until ctx ends, then closes
// the listener and every open connection and waits for their goroutines.
func serveTCP(ctx context.Context, ln net.Listener, name string) error {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			echo(c, name)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

func echo(c net.Conn, name string) {
	defer c.Close()
	if !noGreet.Load() {
		if _, err := fmt.Fprintf(c, "%s hello from %s\n", name, c.LocalAddr()); err != nil {
			return
		}
	}
	// io.Copy between two *net.TCPConn-backed values uses splice on Linux.
	if _, err := io.Copy(c, c); err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// greetings opens n connections to addr one after another and prints the
// greeting line each one starts with.
func greetings(w io.Writer, addr string, n int) error {
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			return fmt.Errorf("connection %d to %s: no greeting: %w", i+1, addr, err)
		}
		fmt.Fprint(w, line)
	}
	return nil
}

// Answer is the JSON body of an HTTP-mode reply.
type Answer struct {
	Name    string              `json:"name"`
	Method  string              `json:"method"`
	Host    string              `json:"host"`
	Path    string              `json:"path"`
	Query   string              `json:"query,omitempty"`
	Proto   string              `json:"proto"`
	Headers map[string][]string `json:"headers"`
	Body    int64               `json:"body_bytes"`
	Remote  string              `json:"remote"`
}

func serveHTTP(ctx context.Context, ln net.Listener, name string) error {
	srv := &http.Server{
		Handler:           failing(handler(name), name, *failEvery),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		Protocols:         new(http.Protocols),
	}
	// HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port.
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		if body := fixedBody.Load(); body != nil {
			h := w.Header()
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Length", strconv.Itoa(len(*body)))
			h.Set("X-Echo-Name", name)
			w.Write(*body)
			return
		}
		a := Answer{
			Name: name, Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery,
			Proto: r.Proto, Headers: r.Header, Body: n, Remote: r.RemoteAddr,
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo-Name", name)
		json.NewEncoder(w).Encode(a)
	})
}
