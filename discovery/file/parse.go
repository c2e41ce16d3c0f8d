package file

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	yaml "github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/outrigger-mesh/outrigger/discovery"
)

// The fields each mapping may hold, in the order error messages list them.
var (
	topFields      = []string{"services"}
	serviceFields  = []string{"name", "endpoints"}
	endpointFields = []string{"address", "port", "weight", "zone", "cluster", "state", "spiffe_id", "id", "metadata"}
)

// Parse converts the bytes of a services file into one Update per service,
// in file order, each with Source set to source. path names the file in
// messages only; Parse does no I/O.
//
// The file is valid or not as a whole: on any problem Parse returns no
// Updates and an error listing every problem found, one per line, each as
// "path:line: field: what is wrong", sorted by line.
func Parse(source, path string, data []byte) ([]discovery.Update, error) {
	p := &fileParser{path: path, anchors: map[string]ast.Node{}}
	ups := p.file(source, data)
	if len(p.problems) > 0 {
		return nil, p.err()
	}
	return ups, nil
}

type problem struct {
	line int
	msg  string
}

// fileParser walks the YAML AST of one services file and collects problems
// rather than stopping at the first.
type fileParser struct {
	path     string
	problems []problem
	// anchors maps each "&name" seen so far to its node, so that "*name"
	// aliases resolve to what they stand for.
	anchors map[string]ast.Node
}

// report records a problem at line; field is the dotted path of the value
// at fault ("services[0].endpoints[1].port"), or "" for the whole file.
func (p *fileParser) report(line int, field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	p.problems = append(p.problems, problem{line: line, msg: msg})
}

func (p *fileParser) err() error {
	slices.SortStableFunc(p.problems, func(a, b problem) int { return cmp.Compare(a.line, b.line) })
	errs := make([]error, len(p.problems))
	for i, pr := range p.problems {
		errs[i] = fmt.Errorf("%s:%d: %s", p.path, pr.line, pr.msg)
	}
	return errors.Join(errs...)
}

func (p *fileParser) file(source string, data []byte) []discovery.Update {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		// The parser stops at its first error, so there is only one.
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil && ye.GetToken().Position != nil {
			p.report(ye.GetToken().Position.Line, "", "syntax error: %s", ye.GetMessage())
		} else {
			p.report(1, "", "syntax error: %v", err)
		}
		return nil
	}
	var docs []ast.Node
	for _, d := range f.Docs {
		if d.Body != nil {
			docs = append(docs, d.Body)
		}
	}
	switch {
	case len(docs) == 0:
		// An empty file is far more often a write caught halfway (truncate,
		// then write) than an intent to drop every service, so it is an error.
		p.report(1, "", `file is empty; want a "services:" list (write "services: []" for no services)`)
		return nil
	case len(docs) > 1:
		p.report(line(docs[1]), "", "want one YAML document, found %d", len(docs))
		return nil
	}

	fields, root := p.mapping(p.resolve(docs[0]), "", topFields)
	if root == nil {
		return nil
	}
	list, ok := fields["services"]
	if !ok {
		p.report(line(root), "services", `is required (write "services: []" for no services)`)
		return nil
	}
	items := p.sequence(list, "services")
	seen := map[string]int{} // service name → line of first use
	ups := make([]discovery.Update, 0, len(items))
	for i, item := range items {
		if u, ok := p.service(source, fmt.Sprintf("services[%d]", i), item, seen); ok {
			ups = append(ups, u)
		}
	}
	return ups
}

func (p *fileParser) service(source, at string, n ast.Node, seen map[string]int) (discovery.Update, bool) {
	fields, m := p.mapping(n, at, serviceFields)
	if m == nil {
		return discovery.Update{}, false
	}
	ok := true
	name, nameNode, isStr := p.str(fields, at, "name")
	switch {
	case nameNode == nil:
		p.report(line(m), at+".name", "is required")
		ok = false
	case !isStr:
		ok = false
	default:
		if err := discovery.ValidateService(name); err != nil {
			p.report(line(nameNode), at+".name", "%v", err)
			ok = false
		} else if first, dup := seen[name]; dup {
			p.report(line(nameNode), at+".name", "duplicate service %q (first at line %d)", name, first)
			ok = false
		} else {
			seen[name] = line(nameNode)
		}
	}

	// A service without endpoints (absent, null or []) exists with none.
	var items []ast.Node
	if list, has := fields["endpoints"]; has {
		items = p.sequence(list, at+".endpoints")
	}
	d := dedup{ids: map[string]int{}, addrs: map[netip.AddrPort]int{}}
	eps := make([]discovery.Endpoint, 0, len(items))
	for j, item := range items {
		if ep, good := p.endpoint(fmt.Sprintf("%s.endpoints[%d]", at, j), item, &d); good {
			eps = append(eps, ep)
		}
	}
	return discovery.Update{Source: source, Service: name, Endpoints: eps}, ok
}

// dedup remembers, within one service, the line where each endpoint ID and
// each address was first used.
type dedup struct {
	ids   map[string]int
	addrs map[netip.AddrPort]int
}

func (p *fileParser) endpoint(at string, n ast.Node, d *dedup) (discovery.Endpoint, bool) {
	fields, m := p.mapping(n, at, endpointFields)
	if m == nil {
		return discovery.Endpoint{}, false
	}
	problems := len(p.problems)
	ep := discovery.Endpoint{Weight: discovery.DefaultWeight}

	addrPort, addrNode := p.address(fields, at, m)
	if addrNode != nil && addrPort.IsValid() {
		ep.Addr = addrPort
	}
	if v, ok := fields["weight"]; ok {
		if w, ok := p.integer(v, at+".weight"); ok {
			if w < 1 || w > discovery.MaxWeight {
				p.report(line(v), at+".weight", "%s is out of range 1..%d", v.GetToken().Value, discovery.MaxWeight)
			} else {
				ep.Weight = uint32(w)
			}
		}
	}
	ep.Locality.Zone, _, _ = p.str(fields, at, "zone")
	ep.Locality.Cluster, _, _ = p.str(fields, at, "cluster")
	if s, v, ok := p.str(fields, at, "state"); ok {
		st, err := discovery.ParseState(s)
		if err != nil {
			p.report(line(v), at+".state", "%v", err)
		}
		ep.State = st
	}
	if s, v, ok := p.str(fields, at, "spiffe_id"); ok && s != "" {
		if err := checkSPIFFEID(s); err != nil {
			p.report(line(v), at+".spiffe_id", "%q is not a SPIFFE ID: %v", s, err)
		}
		ep.SPIFFEID = s
	}
	if v, ok := fields["metadata"]; ok {
		ep.Metadata = p.metadata(v, at+".metadata")
	}

	// Duplicates are only meaningful between endpoints whose address parsed.
	addrDup := false
	if ep.Addr.IsValid() {
		if first, dup := d.addrs[ep.Addr]; dup {
			p.report(line(addrNode), at+".address", "duplicate address %s in this service (first at line %d)", ep.Addr, first)
			addrDup = true
		} else {
			d.addrs[ep.Addr] = line(addrNode)
		}
	}
	id, idNode, idOK := p.str(fields, at, "id")
	switch {
	case idNode != nil:
		if !idOK {
			break
		}
		if id == "" {
			p.report(line(idNode), at+".id", "must not be empty (omit it to use address:port)")
		} else if first, dup := d.ids[id]; dup {
			p.report(line(idNode), at+".id", "duplicate endpoint id %q (first at line %d)", id, first)
		} else {
			d.ids[id] = line(idNode)
		}
	case ep.Addr.IsValid():
		// The default ID is the address, already checked for duplicates
		// above; it can still collide with an explicit id elsewhere.
		id = ep.Addr.String()
		if first, dup := d.ids[id]; dup && !addrDup {
			p.report(line(addrNode), at, "default id %q (address:port) duplicates the endpoint id at line %d", id, first)
		} else if !dup {
			d.ids[id] = line(addrNode)
		}
	}
	ep.ID = id
	return ep, len(p.problems) == problems
}

// address reads the address and port fields together, since the port may be
// written in either. It returns an invalid AddrPort when they are missing or
// wrong (after reporting why), and the address node for line numbers.
func (p *fileParser) address(fields map[string]ast.Node, at string, m ast.Node) (netip.AddrPort, ast.Node) {
	s, addrNode, addrOK := p.str(fields, at, "address")
	portNode, hasPort := fields["port"]
	var port uint16
	portOK := false
	if hasPort {
		if v, ok := p.integer(portNode, at+".port"); ok {
			if v < 1 || v > math.MaxUint16 {
				p.report(line(portNode), at+".port", "%s is out of range 1..65535", portNode.GetToken().Value)
			} else {
				port, portOK = uint16(v), true
			}
		}
	}
	if addrNode == nil {
		p.report(line(m), at+".address", "is required")
		return netip.AddrPort{}, nil
	}
	if !addrOK {
		return netip.AddrPort{}, addrNode
	}
	if s == "" {
		p.report(line(addrNode), at+".address", "must not be empty")
		return netip.AddrPort{}, addrNode
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if !hasPort {
			p.report(line(m), at+".port", "is required (or write the address as ip:port)")
			return netip.AddrPort{}, addrNode
		}
		if !portOK {
			return netip.AddrPort{}, addrNode
		}
		return netip.AddrPortFrom(a, port), addrNode
	}
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		p.report(line(addrNode), at+".address", "%q is not an IP address (want an IPv4 or IPv6 literal, optionally with :port; host names are not resolved)", s)
		return netip.AddrPort{}, addrNode
	case hasPort:
		p.report(line(addrNode), at+".address", "%q includes a port and port is also set; keep one", s)
		return netip.AddrPort{}, addrNode
	case ap.Port() == 0:
		p.report(line(addrNode), at+".address", "port 0 in %q is out of range 1..65535", s)
		return netip.AddrPort{}, addrNode
	}
	return ap, addrNode
}

func (p *fileParser) metadata(n ast.Node, at string) map[string]string {
	if _, m := p.mapping(n, at, nil); m == nil {
		return nil
	}
	md := map[string]string{}
	for _, mv := range n.(*ast.MappingNode).Values {
		k := keyText(mv.Key)
		v := p.resolve(mv.Value)
		switch s, ok := scalarText(v); {
		case ok:
			md[k] = s
		case v == nil || v.Type() == ast.NullType:
			md[k] = ""
		default:
			p.report(line(v), at+"."+k, "want a string, got %s", describe(v))
		}
	}
	if len(md) == 0 {
		return nil
	}
	return md
}

// mapping checks that n is a mapping and returns its fields, each value
// resolved, leaving out fields whose value is null (so "zone:" reads as an
// absent zone). It reports any key not in allowed, unless allowed is nil
// (then any key goes, and fields is nil). The returned node is nil when n is
// not a mapping.
func (p *fileParser) mapping(n ast.Node, at string, allowed []string) (map[string]ast.Node, ast.Node) {
	m, ok := n.(*ast.MappingNode)
	if !ok {
		switch {
		case n == nil:
			// an alias that did not resolve, already reported
		case at == "":
			p.report(line(n), "", `want a mapping with a "services:" list, got %s`, describe(n))
		default:
			p.report(line(n), at, "want a mapping, got %s", describe(n))
		}
		return nil, nil
	}
	if allowed == nil {
		return nil, m
	}
	fields := map[string]ast.Node{}
	for _, mv := range m.Values {
		k := keyText(mv.Key)
		field := k
		if at != "" {
			field = at + "." + k
		}
		if !slices.Contains(allowed, k) {
			if mv.Key.IsMergeKey() {
				p.report(line(mv.Key), field, "merge keys are not supported; write the fields out")
			} else {
				p.report(line(mv.Key), field, "unknown field (want %s)", oneOf(allowed))
			}
			continue
		}
		v := p.resolve(mv.Value)
		if v == nil || v.Type() == ast.NullType {
			continue
		}
		fields[k] = v
	}
	return fields, m
}

// sequence checks that n is a list and returns its items, resolved.
func (p *fileParser) sequence(n ast.Node, at string) []ast.Node {
	s, ok := n.(*ast.SequenceNode)
	if !ok {
		p.report(line(n), at, "want a list, got %s", describe(n))
		return nil
	}
	items := make([]ast.Node, 0, len(s.Values))
	for _, v := range s.Values {
		if v = p.resolve(v); v != nil {
			items = append(items, v)
		}
	}
	return items
}

// str returns the text of the string field key, its node (nil when the
// field is absent), and whether it is present and a string. A value of the
// wrong kind is reported. Numbers and booleans count as strings, spelled as
// written, so that "version: 1.10" means "1.10".
func (p *fileParser) str(fields map[string]ast.Node, at, key string) (string, ast.Node, bool) {
	v, ok := fields[key]
	if !ok {
		return "", nil, false
	}
	s, ok := scalarText(v)
	if !ok {
		p.report(line(v), at+"."+key, "want a string, got %s", describe(v))
		return "", v, false
	}
	return s, v, true
}

// integer returns the value of an integer node; anything else is reported.
func (p *fileParser) integer(n ast.Node, field string) (int64, bool) {
	in, ok := n.(*ast.IntegerNode)
	if !ok {
		p.report(line(n), field, "want an integer, got %s", describe(n))
		return 0, false
	}
	switch v := in.Value.(type) {
	case int64:
		return v, true
	case uint64:
		if v > math.MaxInt64 {
			return math.MaxInt64, true // out of every range we check
		}
		return int64(v), true
	}
	p.report(line(n), field, "want an integer, got %s", describe(n))
	return 0, false
}

// resolve looks through tags, anchors and aliases to the node that holds the
// value. It returns nil (after reporting) for an alias to an unknown anchor.
func (p *fileParser) resolve(n ast.Node) ast.Node {
	for {
		switch v := n.(type) {
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			p.anchors[v.Name.GetToken().Value] = v.Value
			n = v.Value
		case *ast.AliasNode:
			name := v.Value.GetToken().Value
			target, ok := p.anchors[name]
			if !ok {
				p.report(line(v), "", "alias *%s refers to no anchor defined before it", name)
				return nil
			}
			n = target
		default:
			return n
		}
	}
}

func keyText(k ast.Node) string {
	if s, ok := scalarText(k); ok {
		return s
	}
	switch v := k.(type) {
	case *ast.MergeKeyNode:
		return "<<"
	case *ast.MappingKeyNode: // the explicit form, "? key"
		return keyText(v.Value)
	}
	return k.String()
}

// scalarText is the text of a scalar as written (numbers keep their
// spelling), and false for mappings, lists and null.
func scalarText(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return v.GetToken().Value, true
	}
	return "", false
}

// describe names a value for "want X, got Y" messages.
func describe(n ast.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Type() {
	case ast.MappingType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.NullType:
		return "null"
	case ast.StringType, ast.LiteralType:
		s, _ := scalarText(n)
		return fmt.Sprintf("the string %q", s)
	case ast.IntegerType, ast.FloatType, ast.InfinityType, ast.NanType:
		return "the number " + n.GetToken().Value
	case ast.BoolType:
		return "the boolean " + n.GetToken().Value
	}
	return strings.ToLower(n.Type().String())
}

func oneOf(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return "one of " + strings.Join(names, ", ")
}

func line(n ast.Node) int {
	if n == nil {
		return 1
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 1
}

// checkSPIFFEID applies the SPIFFE ID rules (SPIFFE-ID spec, section 2):
// "spiffe://", a trust domain of lower-case letters, digits, '.', '-' and
// '_', then an optional path of non-empty segments of letters, digits, '.',
// '-' and '_' that are not "." or "..", with no trailing slash.
func checkSPIFFEID(s string) error {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return errors.New(`want the scheme "spiffe://"`)
	}
	td, path, hasPath := strings.Cut(rest, "/")
	if td == "" {
		return errors.New("trust domain is missing")
	}
	for _, c := range td {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q may hold only lower-case letters, digits, '.', '-' and '_'", td)
		}
	}
	if !hasPath {
		return nil
	}
	for _, seg := range strings.Split(path, "/") {
		switch seg {
		case "":
			return errors.New("path has an empty segment or a trailing slash")
		case ".", "..":
			return errors.New("path has a '.' or '..' segment")
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return fmt.Errorf("path segment %q may hold only letters, digits, '.', '-' and '_'", seg)
			}
		}
	}
	return nil
}
