package catalog

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/outrigger-mesh/outrigger/discovery"
)

const (
	benchServices  = 1000
	benchEndpoints = 10
)

// benchUpdates returns, for each of n services, two updates of 10 endpoints
// that differ in one weight. The catalog never writes to an update's slice,
// so the benchmarks reuse them.
func benchUpdates(n int) [][2]discovery.Update {
	out := make([][2]discovery.Update, n)
	for s := range out {
		svc := fmt.Sprintf("svc-%d.bench", s)
		for v := range 2 {
			eps := make([]discovery.Endpoint, benchEndpoints)
			for i := range eps {
				eps[i] = discovery.Endpoint{
					ID:       fmt.Sprintf("ep-%02d", i),
					Addr:     netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(s >> 8), byte(s), byte(i)}), 8080),
					Weight:   1,
					Locality: discovery.Locality{Cluster: "east", Zone: "east-1a"},
				}
			}
			eps[0].Weight = uint32(v + 1)
			out[s][v] = discovery.Update{Source: "k8s", Service: svc, Endpoints: eps}
		}
	}
	return out
}

// BenchmarkApplyFanout measures one changed Apply and its delivery to the
// one watcher of that service, with 1,000 watched services of 10 endpoints.
func BenchmarkApplyFanout(b *testing.B) {
	c := New(Options{})
	if err := c.RegisterSource("k8s", 0); err != nil {
		b.Fatal(err)
	}
	updates := benchUpdates(benchServices)
	watches := make([]<-chan *discovery.Snapshot, benchServices)
	for s := range updates {
		if err := c.Apply(updates[s][0]); err != nil {
			b.Fatal(err)
		}
		watches[s] = c.Watch(b.Context(), updates[s][0].Service)
		<-watches[s]
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s := i % benchServices
		if err := c.Apply(updates[s][(i/benchServices+1)%2]); err != nil {
			b.Fatal(err)
		}
		<-watches[s]
	}
}

// BenchmarkApplyUnchanged measures an Apply that changes nothing: validation,
// a read of the stored view, no commit.
func BenchmarkApplyUnchanged(b *testing.B) {
	c := New(Options{})
	if err := c.RegisterSource("k8s", 0); err != nil {
		b.Fatal(err)
	}
	updates := benchUpdates(benchServices)
	for s := range updates {
		if err := c.Apply(updates[s][0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := c.Apply(updates[i%benchServices][0]); err != nil {
			b.Fatal(err)
		}
	}
}
