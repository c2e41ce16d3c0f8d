// Command otlpsink is an OTLP/gRPC trace receiver that counts spans and
// discards them (bench/internal/otlpsink), for measuring what tracing
// costs a proxy from outside benchrun (bench/abpair.sh). It serves until
// interrupted or terminated, then prints how many spans came.
//
//	go run ./bench/cmd/otlpsink -listen 127.0.0.1:18296
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/outrigger-mesh/outrigger/bench/internal/otlpsink"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18296", "address to serve OTLP/gRPC on")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "otlpsink:", err)
		os.Exit(1)
	}
	sink, srv := otlpsink.Start(ln)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	<-ch
	srv.Stop()
	fmt.Fprintf(os.Stderr, "otlpsink: %d spans received\n", sink.Spans())
}
