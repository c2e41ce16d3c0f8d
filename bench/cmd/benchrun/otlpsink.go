package main

import (
	"fmt"
	"net"

	"github.com/outrigger-mesh/outrigger/bench/internal/otlpsink"
)

// portOTLP is where the OTLP sink listens for B9's tracing targets.
const portOTLP = 18295

// otlp starts the sink B9's tracing targets export to on first use, in
// benchrun's own process (whose CPU is not counted as the proxy's), and
// returns it; it serves until benchrun exits.
func (h *harness) otlp() (*otlpsink.Sink, error) {
	if h.sink != nil {
		return h.sink, nil
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", portOTLP))
	if err != nil {
		return nil, fmt.Errorf("otlp sink: %w", err)
	}
	h.sink, _ = otlpsink.Start(ln)
	return h.sink, nil
}
