package main

import (
	"fmt"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// lineOf returns the line of the field at a path like "outbound[0].listen".
// When the field is absent it falls back to its closest present parent, so
// "required" errors point at the block that lacks the field.
func lineOf(file *ast.File, field string) int {
	for p := field; ; {
		if n := nodeAt(file, p); n != nil {
			if line := keyLine(file, p); line > 0 {
				return line
			}
			return n.GetToken().Position.Line
		}
		i := strings.LastIndexAny(p, ".[")
		if q := strings.LastIndex(p, ".'"); strings.HasSuffix(p, "'") && q >= 0 {
			i = q // a quoted key holds dots of its own
		}
		if i <= 0 {
			return 1
		}
		p = p[:i]
	}
}

// keyLine is the line of the key of the mapping entry at field (for a
// block value, the line that names the field rather than the value's
// first line); 0 when field is not a mapping entry.
func keyLine(file *ast.File, field string) int {
	line := 0
	var visit func(n ast.Node, path string)
	visit = func(n ast.Node, path string) {
		switch n := n.(type) {
		case *ast.MappingNode:
			for _, v := range n.Values {
				visit(v, path)
			}
		case *ast.MappingValueNode:
			p := joinKey(path, n.Key.GetToken().Value)
			if p == field {
				line = n.Key.GetToken().Position.Line
				return
			}
			if strings.HasPrefix(field, p) {
				visit(n.Value, p)
			}
		case *ast.SequenceNode:
			for i, v := range n.Values {
				visit(v, fmt.Sprintf("%s[%d]", path, i))
			}
		case *ast.AnchorNode:
			visit(n.Value, path)
		}
	}
	for _, doc := range file.Docs {
		visit(doc.Body, "")
	}
	return line
}

// joinKey appends a mapping key to a field path, quoting a key that holds
// a dot (a service name under upstreams) as go-yaml's path syntax does.
func joinKey(path, key string) string {
	if strings.Contains(key, ".") {
		key = "'" + key + "'"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func nodeAt(file *ast.File, field string) ast.Node {
	if file == nil {
		return nil
	}
	path, err := yaml.PathString("$." + field)
	if err != nil {
		return nil
	}
	n, err := path.FilterFile(file)
	if err != nil || n == nil {
		return nil
	}
	return n
}

// fieldAt names the field whose key or value token sits at line:col, by
// walking the document; "" when none does.
func fieldAt(file *ast.File, line, col int) string {
	if file == nil {
		return ""
	}
	for _, doc := range file.Docs {
		if p, ok := walk(doc.Body, "", line, col); ok {
			return p
		}
	}
	return ""
}

// findTag returns the field path, line and text of the first YAML tag (like
// !!str or !x) in the file; tag is "" when there is none.
func findTag(file *ast.File) (field string, line int, tag string) {
	var visit func(n ast.Node, path string) bool
	visit = func(n ast.Node, path string) bool {
		switch n := n.(type) {
		case nil:
			return false
		case *ast.TagNode:
			field, line, tag = path, n.GetToken().Position.Line, n.Start.Value
			return true
		case *ast.MappingNode:
			for _, v := range n.Values {
				if visit(v, path) {
					return true
				}
			}
		case *ast.MappingValueNode:
			p := joinKey(path, n.Key.GetToken().Value)
			return visit(n.Key, path) || visit(n.Value, p)
		case *ast.SequenceNode:
			for i, v := range n.Values {
				if visit(v, fmt.Sprintf("%s[%d]", path, i)) {
					return true
				}
			}
		case *ast.AnchorNode:
			return visit(n.Value, path)
		}
		return false
	}
	for _, doc := range file.Docs {
		if visit(doc.Body, "") {
			return
		}
	}
	return "", 0, ""
}

func walk(n ast.Node, path string, line, col int) (string, bool) {
	if n == nil {
		return "", false
	}
	switch n := n.(type) {
	case *ast.MappingNode:
		for _, v := range n.Values {
			if p, ok := walk(v, path, line, col); ok {
				return p, true
			}
		}
	case *ast.MappingValueNode:
		p := joinKey(path, n.Key.GetToken().Value)
		if at(n.Key, line, col) {
			return p, true
		}
		return walk(n.Value, p, line, col)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			if p, ok := walk(v, fmt.Sprintf("%s[%d]", path, i), line, col); ok {
				return p, true
			}
		}
	default:
		if at(n, line, col) {
			return path, true
		}
	}
	return "", false
}

func at(n ast.Node, line, col int) bool {
	tk := n.GetToken()
	return tk != nil && tk.Position.Line == line && tk.Position.Column == col
}
