package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestDocsExamplesDecode decodes every ```yaml block of docs/ with penstock's
// own strict decoder, so an example cannot carry an unknown field, a
// duplicate key or a bad value. A block with listeners, upstreams and routes
// is a whole configuration and is validated too; only files it names that
// do not exist here (certificates, keys) may be missing.
func TestDocsExamplesDecode(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs found: %v", err)
	}
	block := regexp.MustCompile("(?ms)^```yaml\n(.*?)^```")
	whole := 0
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range block.FindAllSubmatchIndex(doc, -1) {
			line := 1 + strings.Count(string(doc[:m[0]]), "\n")
			text := doc[m[2]:m[3]]
			name := filepath.Base(f) + ":" + strconv.Itoa(line)
			t.Run(name, func(t *testing.T) {
				cfg, err := Parse(text, name)
				if err != nil {
					t.Fatalf("the example does not decode:\n%v", err)
				}
				if !hasTopLevel(string(text), "listeners", "upstreams", "routes") {
					return
				}
				whole++
				var errs Errors
				if err := cfg.Validate(); errors.As(err, &errs) {
					for _, e := range errs {
						if !missingFile.MatchString(e.Error()) {
							t.Errorf("the example is not a valid configuration: %v", e)
						}
					}
				} else if err != nil {
					t.Errorf("the example is not a valid configuration: %v", err)
				}
			})
		}
	}
	if whole == 0 {
		t.Error("no whole configuration found in docs/: the complete example of configuration.md is gone?")
	}
}

// missingFile matches the error of a file the configuration names that does
// not exist.
var missingFile = regexp.MustCompile(`: missing [a-zA-Z ]*file "`)

// hasTopLevel reports whether the YAML text has every one of keys at its
// top level.
func hasTopLevel(text string, keys ...string) bool {
	for _, k := range keys {
		if !regexp.MustCompile("(?m)^" + k + ":").MatchString(text) {
			return false
		}
	}
	return true
}
