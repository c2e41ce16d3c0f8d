package resilience

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestBudgetValidate(t *testing.T) {
	err := BudgetConfig{Ratio: 1.5, MinPerSecond: 2e6}.Validate()
	if err == nil || strings.Count(err.Error(), "\n") != 1 || !strings.Contains(err.Error(), "ratio: 1.5") {
		t.Errorf("Validate = %v, want two problems naming ratio and min_per_second", err)
	}
}

// take calls TryRetry n times and returns how many were allowed.
func take(b *Budget, n int) int {
	ok := 0
	for range n {
		if b.TryRetry() {
			ok++
		}
	}
	return ok
}

func TestBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, err := NewBudget(BudgetConfig{Ratio: 0.2, MinPerSecond: 2})
		if err != nil {
			t.Fatal(err)
		}
		release := func(n int) {
			for range n {
				b.RetryDone()
			}
		}
		for range 10 {
			b.Begin()
		}
		// 20% of 10 active requests is 2 retries in flight, plus the
		// floor's burst of 2: four now, then nothing.
		if got := take(b, 10); got != 4 {
			t.Fatalf("with 10 active: %d retries allowed, want 4", got)
		}
		if b.Retrying() != 4 {
			t.Errorf("Retrying = %d, want 4", b.Retrying())
		}
		release(4)
		// Ended retries free room under the ratio at once; the floor
		// has not refilled.
		if got := take(b, 10); got != 2 {
			t.Errorf("after the retries ended: %d allowed, want 2", got)
		}
		release(2)
		for range 10 {
			b.End()
		}
		// With no active request only the floor allows retries, and it
		// refills at 2 per second: one token per 500ms.
		time.Sleep(499 * time.Millisecond)
		if got := take(b, 1); got != 0 {
			t.Errorf("after 499ms: %d allowed, want 0", got)
		}
		time.Sleep(time.Millisecond)
		if got := take(b, 3); got != 1 {
			t.Errorf("after 500ms: %d allowed, want 1", got)
		}
		release(1)
		// After a quiet spell the floor holds one second's worth, no more.
		time.Sleep(10 * time.Second)
		if got := take(b, 5); got != 2 {
			t.Errorf("after 10s: %d allowed, want 2", got)
		}
		release(2)
		for range 30 {
			b.Begin()
		}
		if got := take(b, 10); got != 6 { // 0.2 × 30; the floor is empty
			t.Errorf("with 30 active: %d allowed, want 6", got)
		}
		release(6)
		for range 30 {
			b.End()
		}
		if b.Active() != 0 || b.Retrying() != 0 {
			t.Errorf("Active, Retrying = %d, %d at the end, want 0, 0", b.Active(), b.Retrying())
		}
	})
}

func TestBudgetNoFloor(t *testing.T) {
	b, err := NewBudget(BudgetConfig{MinPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	b.Begin()
	if b.TryRetry() {
		t.Error("one active request, default ratio 0.2, no floor: retry allowed")
	}
	if b.Retrying() != 0 {
		t.Errorf("Retrying after a refusal = %d, want 0", b.Retrying())
	}
	for range 9 {
		b.Begin()
	}
	if got := take(b, 5); got != 2 {
		t.Errorf("ten active requests at the default ratio 0.2, no floor: %d retries allowed, want 2", got)
	}
}

func TestBudgetDoesNotAllocate(t *testing.T) {
	b, _ := NewBudget(BudgetConfig{})
	b.Begin()
	if n := testing.AllocsPerRun(100, func() {
		if b.TryRetry() {
			b.RetryDone()
		}
	}); n != 0 {
		t.Errorf("TryRetry: %v allocations, want 0", n)
	}
}

// TestBudgetZeroRatioIsDefault pins the documented meaning of Ratio 0: the
// default share (0.2), not "no retries by ratio".
func TestBudgetZeroRatioIsDefault(t *testing.T) {
	b, err := NewBudget(BudgetConfig{MinPerSecond: -1}) // no floor: the ratio alone decides
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		b.Begin()
	}
	got := 0
	for b.TryRetry() {
		got++
	}
	if got != 2 {
		t.Errorf("retries allowed with 10 requests in flight and Ratio 0: %d, want 2 (the default 0.2)", got)
	}
}
