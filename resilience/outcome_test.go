package resilience

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestKindOf(t *testing.T) {
	// A real failed dial: a port that was listening and is closed now.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, dialErr := net.Dial("tcp", addr)
	if dialErr == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	tests := []struct {
		name string
		err  error
		want Kind
	}{
		{"nil", nil, KindSuccess},
		{"real refused dial", dialErr, KindConnectFailure},
		{"wrapped dial", fmt.Errorf("proxy: %w", &net.OpError{Op: "dial", Err: errors.New("no route")}), KindConnectFailure},
		{"refused", syscall.ECONNREFUSED, KindConnectFailure},
		{"read reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, KindReset},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), KindReset},
		{"deadline", os.ErrDeadlineExceeded, KindTimeout},
		{"context deadline", context.DeadlineExceeded, KindTimeout},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), KindCanceled},
		{"other", errors.New("upstream status 503"), KindFailure},
	}
	for _, tt := range tests {
		if got := KindOf(tt.err); got != tt.want {
			t.Errorf("%s: KindOf(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestOutcomeClasses(t *testing.T) {
	tests := []struct {
		o                      Outcome
		failed, local, neutral bool
	}{
		{Outcome{Kind: KindSuccess}, false, false, false},
		{Response(200), false, false, false},
		{Response(404), false, false, false},
		{Response(500), true, false, false},
		{Response(503), true, false, false},
		{GRPCResponse(GRPCOK), false, false, false},
		{GRPCResponse(GRPCNotFound), false, false, false},
		{GRPCResponse(GRPCUnavailable), true, false, false},
		{GRPCResponse(GRPCInternal), true, false, false},
		{Outcome{Kind: KindConnectFailure}, true, true, false},
		{Outcome{Kind: KindRefusedStream}, true, true, false},
		{Outcome{Kind: KindReset}, true, true, false},
		{Outcome{Kind: KindTimeout}, true, true, false},
		{Outcome{Kind: KindFailure}, true, false, false},
		{Outcome{Kind: KindCanceled}, false, false, true},
		{Outcome{}, false, false, true},
	}
	for _, tt := range tests {
		if got := [3]bool{tt.o.Failed(), tt.o.LocalOrigin(), tt.o.Neutral()}; got != [3]bool{tt.failed, tt.local, tt.neutral} {
			t.Errorf("%+v: failed, local, neutral = %v, want %v", tt.o, got, [3]bool{tt.failed, tt.local, tt.neutral})
		}
	}
	if got := OutcomeOf(Outcome{}, syscall.ECONNREFUSED); got.Kind != KindConnectFailure {
		t.Errorf("OutcomeOf(unknown, ECONNREFUSED) = %+v, want connect failure", got)
	}
	if got := OutcomeOf(Response(503), nil); got != Response(503) {
		t.Errorf("OutcomeOf(503, nil) = %+v, want the classified outcome kept", got)
	}
}
