package file

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// cmpAddr lets go-cmp compare netip values, whose fields are unexported.
var cmpAddr = cmpopts.EquateComparable(netip.AddrPort{})

func TestParseGood(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name string
		yaml string
		want []discovery.Update
	}{{
		name: "every field",
		yaml: `# services.yaml
services:
  - name: echo.demo
    endpoints:
      - address: 127.0.0.1
        port: 9101
        weight: 5
        zone: local-a
        cluster: local
        state: draining
        spiffe_id: spiffe://example.org/ns/demo/sa/echo
        id: echo-1
        metadata: {version: v1, build: 1.10, canary: true}
`,
		want: []discovery.Update{{Source: "local", Service: "echo.demo", Endpoints: []discovery.Endpoint{{
			ID:       "echo-1",
			Addr:     ap("127.0.0.1:9101"),
			Weight:   5,
			Locality: discovery.Locality{Cluster: "local", Zone: "local-a"},
			State:    discovery.StateDraining,
			SPIFFEID: "spiffe://example.org/ns/demo/sa/echo",
			Metadata: map[string]string{"version": "v1", "build": "1.10", "canary": "true"},
		}}}},
	}, {
		name: "defaults",
		yaml: `services:
  - name: echo.demo
    endpoints:
      - address: 10.0.0.1
        port: 80
        zone:
        state: ""
        metadata: {}
`,
		want: []discovery.Update{{Source: "local", Service: "echo.demo", Endpoints: []discovery.Endpoint{
			{ID: "10.0.0.1:80", Addr: ap("10.0.0.1:80"), Weight: discovery.DefaultWeight, State: discovery.StateReady},
		}}},
	}, {
		name: "IPv6 and the address:port form",
		yaml: `services:
  - name: echo.demo
    endpoints:
      - {address: "::1", port: 9101}
      - {address: "[2001:db8::1]:8443", state: not_ready}
      - {address: "192.0.2.7:9101", weight: 1000}
`,
		want: []discovery.Update{{Source: "local", Service: "echo.demo", Endpoints: []discovery.Endpoint{
			{ID: "[::1]:9101", Addr: ap("[::1]:9101"), Weight: 1},
			{ID: "[2001:db8::1]:8443", Addr: ap("[2001:db8::1]:8443"), Weight: 1, State: discovery.StateNotReady},
			{ID: "192.0.2.7:9101", Addr: ap("192.0.2.7:9101"), Weight: 1000},
		}}},
	}, {
		name: "services without endpoints, in file order",
		yaml: `services:
  - name: b.demo
    endpoints: []
  - name: a.demo
  - name: c.demo
    endpoints:
`,
		want: []discovery.Update{
			{Source: "local", Service: "b.demo", Endpoints: []discovery.Endpoint{}},
			{Source: "local", Service: "a.demo", Endpoints: []discovery.Endpoint{}},
			{Source: "local", Service: "c.demo", Endpoints: []discovery.Endpoint{}},
		},
	}, {
		name: "no services",
		yaml: "services: []\n",
		want: []discovery.Update{},
	}, {
		name: "same address in two services, anchors and aliases",
		yaml: `services:
  - name: echo.demo
    endpoints:
      - address: 127.0.0.1:9101
        metadata: &labels {team: edge}
  - name: echo-alias.demo
    endpoints:
      - address: 127.0.0.1:9101
        metadata: *labels
`,
		want: []discovery.Update{
			{Source: "local", Service: "echo.demo", Endpoints: []discovery.Endpoint{
				{ID: "127.0.0.1:9101", Addr: ap("127.0.0.1:9101"), Weight: 1, Metadata: map[string]string{"team": "edge"}},
			}},
			{Source: "local", Service: "echo-alias.demo", Endpoints: []discovery.Endpoint{
				{ID: "127.0.0.1:9101", Addr: ap("127.0.0.1:9101"), Weight: 1, Metadata: map[string]string{"team": "edge"}},
			}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("local", "services.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: unexpected error:\n%v", err)
			}
			if diff := cmp.Diff(got, tt.want, cmpAddr); diff != "" {
				t.Errorf("Parse (-got +want):\n%s", diff)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	const ep = "services:\n  - name: echo.demo\n    endpoints:\n      - address: 127.0.0.1\n" // endpoint fields go on line 5
	tests := []struct {
		name string
		yaml string
		want string
	}{{
		name: "unknown endpoint field",
		yaml: ep + "        port: 9101\n        prot: 9102\n",
		want: "services.yaml:6: services[0].endpoints[0].prot: unknown field (want one of address, port, weight, zone, cluster, state, spiffe_id, id, metadata)",
	}, {
		name: "unknown service field",
		yaml: "services:\n  - name: echo.demo\n    endpoint: []\n",
		want: "services.yaml:3: services[0].endpoint: unknown field (want one of name, endpoints)",
	}, {
		name: "unknown top-level field",
		yaml: "service: []\n",
		want: "services.yaml:1: service: unknown field (want services)\n" +
			`services.yaml:1: services: is required (write "services: []" for no services)`,
	}, {
		name: "port out of range",
		yaml: ep + "        port: 70000\n",
		want: "services.yaml:5: services[0].endpoints[0].port: 70000 is out of range 1..65535",
	}, {
		name: "port zero",
		yaml: ep + "        port: 0\n",
		want: "services.yaml:5: services[0].endpoints[0].port: 0 is out of range 1..65535",
	}, {
		name: "port not a number",
		yaml: ep + "        port: http\n",
		want: `services.yaml:5: services[0].endpoints[0].port: want an integer, got the string "http"`,
	}, {
		name: "port missing",
		yaml: ep,
		want: "services.yaml:4: services[0].endpoints[0].port: is required (or write the address as ip:port)",
	}, {
		name: "port twice",
		yaml: "services:\n  - name: echo.demo\n    endpoints:\n      - address: 127.0.0.1:9101\n        port: 9101\n",
		want: `services.yaml:4: services[0].endpoints[0].address: "127.0.0.1:9101" includes a port and port is also set; keep one`,
	}, {
		name: "host name for address",
		yaml: "services:\n  - name: echo.demo\n    endpoints:\n      - address: echo.local\n        port: 9101\n",
		want: `services.yaml:4: services[0].endpoints[0].address: "echo.local" is not an IP address (want an IPv4 or IPv6 literal, optionally with :port; host names are not resolved)`,
	}, {
		name: "address missing",
		yaml: "services:\n  - name: echo.demo\n    endpoints:\n      - port: 9101\n",
		want: "services.yaml:4: services[0].endpoints[0].address: is required",
	}, {
		name: "weight zero",
		yaml: ep + "        port: 9101\n        weight: 0\n",
		want: "services.yaml:6: services[0].endpoints[0].weight: 0 is out of range 1..1000",
	}, {
		name: "weight too big",
		yaml: ep + "        port: 9101\n        weight: 1001\n",
		want: "services.yaml:6: services[0].endpoints[0].weight: 1001 is out of range 1..1000",
	}, {
		name: "weight fraction",
		yaml: ep + "        port: 9101\n        weight: 0.5\n",
		want: "services.yaml:6: services[0].endpoints[0].weight: want an integer, got the number 0.5",
	}, {
		name: "unknown state",
		yaml: ep + "        port: 9101\n        state: up\n",
		want: `services.yaml:6: services[0].endpoints[0].state: unknown state "up" (want ready, draining or not_ready)`,
	}, {
		name: "spiffe id with another scheme",
		yaml: ep + "        port: 9101\n        spiffe_id: https://example.org/echo\n",
		want: `services.yaml:6: services[0].endpoints[0].spiffe_id: "https://example.org/echo" is not a SPIFFE ID: want the scheme "spiffe://"`,
	}, {
		name: "spiffe id without trust domain",
		yaml: ep + "        port: 9101\n        spiffe_id: spiffe:///ns/demo\n",
		want: `services.yaml:6: services[0].endpoints[0].spiffe_id: "spiffe:///ns/demo" is not a SPIFFE ID: trust domain is missing`,
	}, {
		name: "spiffe id with upper-case trust domain",
		yaml: ep + "        port: 9101\n        spiffe_id: spiffe://Example.org/echo\n",
		want: `services.yaml:6: services[0].endpoints[0].spiffe_id: "spiffe://Example.org/echo" is not a SPIFFE ID: trust domain "Example.org" may hold only lower-case letters, digits, '.', '-' and '_'`,
	}, {
		name: "spiffe id with trailing slash",
		yaml: ep + "        port: 9101\n        spiffe_id: spiffe://example.org/echo/\n",
		want: `services.yaml:6: services[0].endpoints[0].spiffe_id: "spiffe://example.org/echo/" is not a SPIFFE ID: path has an empty segment or a trailing slash`,
	}, {
		name: "duplicate service",
		yaml: "services:\n  - name: echo.demo\n  - name: echo.demo\n",
		want: `services.yaml:3: services[1].name: duplicate service "echo.demo" (first at line 2)`,
	}, {
		name: "duplicate endpoint id",
		yaml: `services:
  - name: echo.demo
    endpoints:
      - {address: 127.0.0.1, port: 9101, id: echo-1}
      - {address: 127.0.0.1, port: 9102, id: echo-1}
`,
		want: `services.yaml:5: services[0].endpoints[1].id: duplicate endpoint id "echo-1" (first at line 4)`,
	}, {
		name: "duplicate address, written two ways",
		yaml: `services:
  - name: echo.demo
    endpoints:
      - {address: 127.0.0.1, port: 9101}
      - {address: "127.0.0.1:9101", id: other}
`,
		want: "services.yaml:5: services[0].endpoints[1].address: duplicate address 127.0.0.1:9101 in this service (first at line 4)",
	}, {
		name: "default id clashes with an explicit one",
		yaml: `services:
  - name: echo.demo
    endpoints:
      - {address: 127.0.0.1, port: 9102, id: "127.0.0.1:9101"}
      - {address: 127.0.0.1, port: 9101}
`,
		want: `services.yaml:5: services[0].endpoints[1]: default id "127.0.0.1:9101" (address:port) duplicates the endpoint id at line 4`,
	}, {
		name: "service key without namespace",
		yaml: "services:\n  - name: echo\n",
		want: `services.yaml:2: services[0].name: invalid service key "echo": want name.namespace, like orders.shop`,
	}, {
		name: "service key not DNS labels",
		yaml: "services:\n  - name: Echo.demo\n",
		want: `services.yaml:2: services[0].name: invalid service key "Echo.demo": "Echo" is not a DNS label (lower-case letters, digits and '-', at most 63, starting and ending with a letter or digit)`,
	}, {
		name: "service name missing",
		yaml: "services:\n  - endpoints: []\n",
		want: "services.yaml:2: services[0].name: is required",
	}, {
		name: "YAML syntax error",
		yaml: "services:\n  - name: echo.demo\n    endpoints: [\n",
		want: "services.yaml:3: syntax error: sequence end token ']' not found",
	}, {
		name: "tab indentation",
		yaml: "services:\n\t- name: echo.demo\n",
		want: `services.yaml:2: syntax error: found character '	' that cannot start any token`,
	}, {
		name: "key given twice",
		yaml: ep + "        port: 9101\n        port: 9102\n",
		want: `services.yaml:6: syntax error: mapping key "port" already defined at [5:9]`,
	}, {
		name: "write caught halfway",
		yaml: ep + "        po",
		want: "services.yaml:5: syntax error: non-map value is specified",
	}, {
		name: "empty file",
		yaml: "",
		want: `services.yaml:1: file is empty; want a "services:" list (write "services: []" for no services)`,
	}, {
		name: "comments only",
		yaml: "# nothing yet\n",
		want: `services.yaml:1: file is empty; want a "services:" list (write "services: []" for no services)`,
	}, {
		name: "two documents",
		yaml: "services: []\n---\nservices: []\n",
		want: "services.yaml:3: want one YAML document, found 2",
	}, {
		name: "top level is a list",
		yaml: "- name: echo.demo\n",
		want: `services.yaml:1: want a mapping with a "services:" list, got a list`,
	}, {
		name: "services is null",
		yaml: "services:\n",
		want: `services.yaml:1: services: is required (write "services: []" for no services)`,
	}, {
		name: "services is a mapping",
		yaml: "services:\n  echo.demo: []\n",
		want: "services.yaml:2: services: want a list, got a mapping",
	}, {
		name: "endpoint is a string",
		yaml: "services:\n  - name: echo.demo\n    endpoints:\n      - 127.0.0.1:9101\n",
		want: `services.yaml:4: services[0].endpoints[0]: want a mapping, got the string "127.0.0.1:9101"`,
	}, {
		name: "nested metadata",
		yaml: ep + "        port: 9101\n        metadata:\n          labels: {a: b}\n",
		want: "services.yaml:7: services[0].endpoints[0].metadata.labels: want a string, got a mapping",
	}, {
		name: "zone is a list",
		yaml: ep + "        port: 9101\n        zone: [a, b]\n",
		want: "services.yaml:6: services[0].endpoints[0].zone: want a string, got a list",
	}, {
		name: "alias to nothing",
		yaml: "services:\n  - name: echo.demo\n    endpoints:\n      - *nope\n",
		want: "services.yaml:4: alias *nope refers to no anchor defined before it",
	}, {
		name: "merge key",
		yaml: ep + "        <<: {port: 9101}\n",
		want: "services.yaml:4: services[0].endpoints[0].port: is required (or write the address as ip:port)\n" +
			"services.yaml:5: services[0].endpoints[0].<<: merge keys are not supported; write the fields out",
	}, {
		name: "every problem, in line order",
		yaml: `services:
  - name: echo.demo
    endpoints:
      - address: 127.0.0.1
        port: 70000
        weight: 0
      - address: 256.0.0.1
        port: 9101
        state: gone
  - name: echo.demo
    typo: 1
`,
		want: "services.yaml:5: services[0].endpoints[0].port: 70000 is out of range 1..65535\n" +
			"services.yaml:6: services[0].endpoints[0].weight: 0 is out of range 1..1000\n" +
			`services.yaml:7: services[0].endpoints[1].address: "256.0.0.1" is not an IP address (want an IPv4 or IPv6 literal, optionally with :port; host names are not resolved)` + "\n" +
			`services.yaml:9: services[0].endpoints[1].state: unknown state "gone" (want ready, draining or not_ready)` + "\n" +
			`services.yaml:10: services[1].name: duplicate service "echo.demo" (first at line 2)` + "\n" +
			"services.yaml:11: services[1].typo: unknown field (want one of name, endpoints)",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("local", "services.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse: no error, got %v", got)
			}
			if got != nil {
				t.Errorf("Parse: got updates %v with an error, want none", got)
			}
			if diff := cmp.Diff(err.Error(), tt.want); diff != "" {
				t.Errorf("Parse error (-got +want):\n%s", diff)
			}
		})
	}
}
