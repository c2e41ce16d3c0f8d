package resilience

import (
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"
)

type verdict struct {
	OK         bool
	RetryAfter int
}

func allowN(n int, allow func() (bool, int)) []verdict {
	var v []verdict
	for range n {
		ok, ra := allow()
		v = append(v, verdict{ok, ra})
	}
	return v
}

func TestLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(RateLimitConfig{Rate: 2, Burst: 3})
		// The burst, then 429 with Retry-After 1 (a token is 500ms away,
		// rounded up to whole seconds).
		want := []verdict{{true, 0}, {true, 0}, {true, 0}, {false, 1}, {false, 1}}
		if diff := cmp.Diff(allowN(5, l.Allow), want); diff != "" {
			t.Errorf("burst (-got +want):\n%s", diff)
		}
		// Counted, not timed: over 10s at 2/s exactly 20 more pass.
		passed := 0
		for range 100 {
			time.Sleep(100 * time.Millisecond)
			if ok, _ := l.Allow(); ok {
				passed++
			}
		}
		if passed != 20 {
			t.Errorf("over 10s at rate 2: %d allowed, want 20", passed)
		}

		slow := NewLimiter(RateLimitConfig{Rate: 0.1}) // one per 10s, burst 1
		want = []verdict{{true, 0}, {false, 10}}
		if diff := cmp.Diff(allowN(2, slow.Allow), want); diff != "" {
			t.Errorf("rate 0.1 (-got +want):\n%s", diff)
		}
		time.Sleep(2500 * time.Millisecond)
		if diff := cmp.Diff(allowN(1, slow.Allow), []verdict{{false, 8}}); diff != "" {
			t.Errorf("2.5s later (-got +want):\n%s", diff) // 7.5s rounded up
		}
	})
}

func TestClientLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewClientLimiter[netip.Addr](RateLimitConfig{Rate: 1, MaxClients: 4})
		a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
		// Separate buckets per client.
		got := []verdict{}
		for _, k := range []netip.Addr{a, a, b, b} {
			ok, ra := c.Allow(k)
			got = append(got, verdict{ok, ra})
		}
		if diff := cmp.Diff(got, []verdict{{true, 0}, {false, 1}, {true, 0}, {false, 1}}); diff != "" {
			t.Errorf("two clients (-got +want):\n%s", diff)
		}
		// Many clients: the table stays within MaxClients, and a client
		// seen all along keeps its (empty) bucket.
		for i := range 100 {
			time.Sleep(time.Millisecond) // so that a is seen after the others
			c.Allow(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}))
			if ok, _ := c.Allow(a); ok {
				t.Fatalf("client a got a token back after %d others came", i)
			}
			if n := c.Len(); n > 4+1 { // the table, and one pending
				t.Fatalf("table holds %d clients, max 4 (+1 pending)", n)
			}
		}
		// Buckets that are full again leave the table at the next
		// publish, and a client coming back is limited as before.
		time.Sleep(2 * time.Second)
		c.Allow(netip.MustParseAddr("10.9.9.9")) // publishes
		if n := c.Len(); n != 1 {
			t.Errorf("after 2s idle: %d clients, want 1", n)
		}
		got = allowN(2, func() (bool, int) { return c.Allow(a) })
		if diff := cmp.Diff(got, []verdict{{true, 0}, {false, 1}}); diff != "" {
			t.Errorf("client a back (-got +want):\n%s", diff)
		}
	})
}

// TestLimiterMatchesXRate checks the lock-free bucket against
// golang.org/x/time/rate's Limiter with the same rate and burst, on an
// irregular schedule: both must allow exactly the same requests.
func TestLimiterMatchesXRate(t *testing.T) {
	for _, cfg := range []RateLimitConfig{{Rate: 2, Burst: 3}, {Rate: 0.5, Burst: 1}, {Rate: 100, Burst: 10}, {Rate: 7}} {
		synctest.Test(t, func(t *testing.T) {
			l := NewLimiter(cfg)
			d := cfg.withDefaults()
			x := rate.NewLimiter(rate.Limit(d.Rate), d.Burst)
			step := uint32(12345)
			for i := range 2000 {
				step = step*1103515245 + 12345
				time.Sleep(time.Duration(step%400) * time.Millisecond / time.Duration(1+int(d.Rate)/10))
				ok, _ := l.Allow()
				if want := x.Allow(); ok != want {
					t.Fatalf("rate %v burst %d, request %d: Allow = %v, x/time/rate says %v", d.Rate, d.Burst, i, ok, want)
				}
			}
		})
	}
}

func TestLimiterAllocs(t *testing.T) {
	l := NewLimiter(RateLimitConfig{Rate: 1e9, Burst: 1e6})
	c := NewClientLimiter[netip.Addr](RateLimitConfig{Rate: 1e9, Burst: 1e6})
	a := netip.MustParseAddr("10.0.0.1")
	c.Allow(a) // published: the table was empty
	if n := testing.AllocsPerRun(100, func() { l.Allow(); c.Allow(a) }); n != 0 {
		t.Errorf("Allow allocates %v times", n)
	}
}

func TestRateLimitValidate(t *testing.T) {
	err := RateLimitConfig{Rate: -1, Burst: -1, MaxClients: -1}.Validate()
	if err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("Validate = %v, want three problems", err)
	}
	if (RateLimitConfig{}).Enabled() {
		t.Error("zero config enabled")
	}
}

// A new client's bucket is seen when it is made: a publish that has to drop
// the least recently seen never drops the bucket just handed out (which
// would give that client a fresh burst on every request).
func TestClientLimiterKeepsTheNewestClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewClientLimiter[string](RateLimitConfig{Rate: 1, Burst: 1, MaxClients: 2})
		for _, k := range []string{"a", "b"} {
			time.Sleep(time.Millisecond) // each seen later than the limiter's start
			if ok, _ := c.Allow(k); !ok {
				t.Fatalf("%s's first request refused", k)
			}
		}
		time.Sleep(time.Millisecond)
		passed := 0
		for range 20 {
			if ok, _ := c.Allow("c"); ok {
				passed++
			}
		}
		if passed != 1 {
			t.Errorf("client c got %d of 20 requests through with burst 1, want 1", passed)
		}
	})
}
