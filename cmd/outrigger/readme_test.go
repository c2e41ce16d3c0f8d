package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README's "Configuration in one screen" is a config that validates.
func TestReadmeConfigIsValid(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Configuration in one screen")
	_, example, ok2 := strings.Cut(section, "```yaml\n")
	example, _, ok3 := strings.Cut(example, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("no yaml block under \"Configuration in one screen\" in README.md")
	}
	if _, err := ParseConfig("README.md", []byte(example)); err != nil {
		t.Errorf("the README's config does not validate:\n%v", err)
	}
}
