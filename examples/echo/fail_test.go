package main

import (
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFailEveryAnswers503OnEveryNthRequest(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want []int
	}{
		{0, []int{200, 200, 200, 200}},
		{1, []int{503, 503, 503, 503}},
		{2, []int{200, 503, 200, 503}},
		{3, []int{200, 200, 503, 200}},
	} {
		h := failing(handler("echo-f"), "echo-f", tc.n)
		var got []int
		for range tc.want {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Header().Get("X-Echo-Name") != "echo-f" {
				t.Errorf("n=%d: X-Echo-Name = %q, want echo-f", tc.n, rec.Header().Get("X-Echo-Name"))
			}
			got = append(got, rec.Code)
		}
		if diff := cmp.Diff(got, tc.want); diff != "" {
			t.Errorf("-fail-every %d: statuses (-got +want):\n%s", tc.n, diff)
		}
	}
}
