package route

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExplain(t *testing.T) {
	tab := mustNew(t,
		to("api-canary", MatchConfig{Hosts: []string{"shop.example.com"}, Path: prefix("/api"),
			Headers: []HeaderMatch{{Name: "x-canary", Value: "1"}}}),
		to("api-post", MatchConfig{Hosts: []string{"shop.example.com"}, Path: prefix("/api"), Methods: []string{"POST", "PUT"}}),
		to("api", MatchConfig{Hosts: []string{"shop.example.com"}, Path: prefix("/api/")}),
		to("wild", MatchConfig{Hosts: []string{"*.example.com"}, Path: exact("/w")}),
		to("q", MatchConfig{Path: regex("/q.*"), Query: []QueryMatch{{Name: "v", Value: "[0-9]+", Regex: true}}}),
		to("other", MatchConfig{Hosts: []string{"other.example.org"}}),
	)
	type trial struct{ Name, Via, Failed string }
	trials := func(x Explanation) []trial {
		var out []trial
		for _, tr := range x.Tried {
			out = append(out, trial{tr.Route.Name, tr.Via, tr.Failed})
		}
		return out
	}
	for _, tc := range []struct {
		name, host, path, method, query string
		h                               http.Header
		chain                           string
		want                            []trial
		match                           string
		notConsidered                   int
	}{{
		name: "exact host, falls through to a plainer route", host: "SHOP.example.com:8080", path: "/api/x", method: "GET",
		chain: "exact host",
		want: []trial{
			{"api-post", "shop.example.com", `method "GET" is not POST or PUT`},
			{"api-canary", "shop.example.com", "header X-Canary: absent"},
			{"api", "shop.example.com", ""},
		},
		match: "api", notConsidered: 1,
	}, {
		name: "header value differs; a trailing slash of a prefix is ignored", host: "shop.example.com", path: "/api", method: "GET",
		h: http.Header{"X-Canary": {"2"}}, chain: "exact host",
		want: []trial{
			{"api-post", "shop.example.com", `method "GET" is not POST or PUT`},
			{"api-canary", "shop.example.com", `header X-Canary: no value equals "1"`},
			{"api", "shop.example.com", ""},
		},
		match: "api", notConsidered: 1,
	}, {
		name: "no route matches", host: "shop.example.com", path: "/apix", method: "POST",
		chain: "exact host",
		want: []trial{
			{"api-post", "shop.example.com", `path "/apix" is not under prefix "/api"`},
			{"api-canary", "shop.example.com", `path "/apix" is not under prefix "/api"`},
			{"api", "shop.example.com", `path "/apix" is not under prefix "/api/"`},
			{"wild", "*.example.com", `path "/apix" is not exactly "/w"`},
			{"q", "", `path "/apix" does not match regex "/q.*"`},
		},
		notConsidered: 1,
	}, {
		name: "wildcard", host: "a.example.com", path: "/w", method: "GET",
		chain: "wildcard *.example.com",
		want:  []trial{{"wild", "*.example.com", ""}},
		match: "wild", notConsidered: 4,
	}, {
		name: "any host, query fails", host: "unknown.test", path: "/q1", method: "GET", query: "v=x",
		chain:         "any host",
		want:          []trial{{"q", "", `query parameter v: no value matches regex "[0-9]+"`}},
		notConsidered: 5,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			x := tab.Explain(tc.host, tc.path, tc.method, tc.h, tc.query)
			if x.Chain != tc.chain {
				t.Errorf("chain %q, want %q", x.Chain, tc.chain)
			}
			if diff := cmp.Diff(trials(x), tc.want); diff != "" {
				t.Errorf("tried (-got +want):\n%s", diff)
			}
			if m := tab.Match(tc.host, tc.path, tc.method, tc.h, tc.query); m != x.Match || (m == nil) != (tc.match == "") || m != nil && m.Name != tc.match {
				t.Errorf("Explain matched %v, Match %v, want %q", x.Match, m, tc.match)
			}
			if x.NotConsidered != tc.notConsidered {
				t.Errorf("not considered %d, want %d", x.NotConsidered, tc.notConsidered)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	tab := mustNew(t, to("r", MatchConfig{Hosts: []string{"A.example.com"}, Path: prefix("/api"), Methods: []string{"GET", "HEAD"},
		Headers: []HeaderMatch{{Name: "x-canary", Value: "1"}}, Query: []QueryMatch{{Name: "v", Value: "[0-9]+", Regex: true}}}),
		to("all", MatchConfig{}))
	got := [][]string{tab.Routes()[0].Conditions(), tab.Routes()[1].Conditions()}
	want := [][]string{
		{"host a.example.com", "path Prefix /api", "method GET or HEAD", "header X-Canary = 1", "query v ~ [0-9]+"},
		{"any host", "path Prefix /"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("conditions (-got +want):\n%s", diff)
	}
}
