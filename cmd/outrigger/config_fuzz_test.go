package main

import (
	"strings"
	"testing"
)

// FuzzParseConfig: no input may crash the config parser, and every error
// names the file. Seeds run in every `go test`; fuzz with
// go test -run '^$' -fuzz FuzzParseConfig ./cmd/outrigger/
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("outbound: !x 1\n"))
	f.Add([]byte("discovery: !!str x\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Add([]byte("discovery:\n  - {name: a, file: {path: s}}\noutbound:\n  - {name: o, listen: '127.0.0.1:1', protocol: http, " +
		"routes: [{match: {path: {type: Regex, value: a}}, backends: [{service: a.b}]}]}\n"))
	f.Add([]byte(upstreamsHead + "  orders.shop:\n    circuit_breaker: {open: 1m}\n    outlier_detection: {}\n" +
		"    health_check: {type: http, http: {expected_statuses: [200-299, 300]}}\n  'a.b': ~\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := ParseConfig("f.yaml", data)
		if err != nil && !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Errorf("error does not name the file: %v", err)
		}
	})
}
