package route

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWarnings(t *testing.T) {
	hosts := func(h ...string) []string { return h }
	hdr := []HeaderMatch{{Name: "X-A", Value: "1"}}
	tests := []struct {
		name   string
		routes []RouteConfig
		want   []string
	}{{
		name: "identical match",
		routes: []RouteConfig{
			to("a", MatchConfig{Hosts: hosts("a.com"), Path: prefix("/x"), Headers: hdr}),
			to("b", MatchConfig{Hosts: hosts("A.com"), Path: prefix("/x/"), Headers: []HeaderMatch{{Name: "x-a", Value: "1"}}}),
			to("c", MatchConfig{Hosts: hosts("a.com"), Path: exact("/x")}),
			to("d", MatchConfig{Hosts: hosts("a.com"), Path: exact("/x")}),
		},
		want: []string{
			`routes[1] ("b") can never match: routes[0] ("a") matches every request it does`,
			`routes[3] ("d") can never match: routes[2] ("c") matches every request it does`,
		},
	}, {
		name: "catch-all shadows later equal-or-weaker routes of the same hosts",
		routes: []RouteConfig{
			to("all", MatchConfig{Hosts: hosts("a.com", "*.b.com")}),
			to("regex", MatchConfig{Hosts: hosts("*.b.com", "a.com"), Path: regex("/x.*")}),
			to("again", MatchConfig{Hosts: hosts("a.com", "*.b.com"), Path: prefix("/")}),
			to("subset", MatchConfig{Hosts: hosts("a.com")}),
			{Match: MatchConfig{Hosts: hosts("a.com"), Path: regex("/y")}, Fixed: &FixedResponse{Status: 404}},
			// Reachable: more specific paths, conditions, or other hosts.
			to("longer", MatchConfig{Hosts: hosts("a.com"), Path: prefix("/x")}),
			to("exact", MatchConfig{Hosts: hosts("a.com"), Path: exact("/")}),
			to("header", MatchConfig{Hosts: hosts("a.com"), Headers: hdr}),
			to("method", MatchConfig{Hosts: hosts("a.com"), Methods: []string{"GET"}}),
			to("more-hosts", MatchConfig{Hosts: hosts("a.com", "c.com")}),
			to("any-host", MatchConfig{}),
			to("exact-host-under-wildcard", MatchConfig{Hosts: hosts("x.b.com")}),
		},
		want: []string{
			`routes[1] ("regex") can never match: routes[0] ("all") matches every request it does`,
			`routes[2] ("again") can never match: routes[0] ("all") matches every request it does`,
			`routes[3] ("subset") can never match: routes[0] ("all") matches every request it does`,
			`routes[4] can never match: routes[0] ("all") matches every request it does`,
		},
	}, {
		name: "a shorter prefix with fewer conditions shadows a longer one only if it ranks first",
		routes: []RouteConfig{
			to("x", MatchConfig{Path: prefix("/x")}),
			to("x-regex", MatchConfig{Path: regex("/x/[0-9]+")}),
			to("xy-method", MatchConfig{Path: prefix("/x/y"), Methods: []string{"GET"}}),
			to("get-post", MatchConfig{Path: prefix("/z"), Methods: []string{"GET", "POST"}, Headers: hdr}),
			to("get", MatchConfig{Path: prefix("/z/"), Methods: []string{"GET"}, Headers: hdr}),
			// More conditions rank first: reachable.
			to("get-more", MatchConfig{Path: prefix("/z/"), Methods: []string{"GET"}, Headers: hdr, Query: []QueryMatch{{Name: "a", Value: "1"}}}),
			// Ranks after get-post but lacks its header: reachable.
			to("get-query", MatchConfig{Path: prefix("/z"), Methods: []string{"GET"}, Query: []QueryMatch{{Name: "a", Value: "1"}}}),
		},
		// x-regex is not reported: x does not cover every path a regex can
		// take, and the check does not reason about regexes.
		want: []string{
			`routes[4] ("get") can never match: routes[3] ("get-post") matches every request it does`,
		},
	}, {
		name: "none",
		routes: []RouteConfig{
			to("exact", MatchConfig{Hosts: hosts("a.com")}),
			to("wild", MatchConfig{Hosts: hosts("*.com")}),
			to("any", MatchConfig{}),
			to("h1", MatchConfig{Headers: hdr}),
			to("h2", MatchConfig{Headers: []HeaderMatch{{Name: "X-A", Value: "1", Regex: true}}}),
			to("q", MatchConfig{Query: []QueryMatch{{Name: "X-A", Value: "1"}}}),
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(mustNew(t, tc.routes...).Warnings(), tc.want); diff != "" {
				t.Errorf("Warnings (-got +want):\n%s", diff)
			}
		})
	}
}
