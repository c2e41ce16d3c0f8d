package main

import "fmt"

// Route timeouts: routes[].timeout bounds a request's wait for its
// response head over every attempt and backoff (proxy/timeout.go). It
// travels with the route table, so a reload applies it in place. The
// route package checks the rest (negative, only with backends); the
// duration's syntax is checked here, where the file's text is.

// validateRouteTimeouts checks the timeout of every route of c.
func (c *Config) validateRouteTimeouts(add func(string, string, ...any), checkDur func(string, Duration)) {
	for i, o := range c.Outbound {
		for j, rt := range o.Routes {
			p := fmt.Sprintf("outbound[%d].routes[%d].timeout", i, j)
			checkDur(p, rt.Timeout)
			if rt.Timeout.invalid != "" || rt.Timeout.d <= 0 {
				continue
			}
			if len(rt.Backends) == 0 {
				continue // route.Config.Validate reports it
			}
			if r := rt.Retry; r != nil && r.PerTryTimeout.invalid == "" && r.PerTryTimeout.d > rt.Timeout.d {
				add(fmt.Sprintf("outbound[%d].routes[%d].retry.per_try_timeout", i, j),
					"%v is longer than the route's timeout (%v), which bounds all attempts", r.PerTryTimeout.d, rt.Timeout.d)
			}
		}
	}
}
