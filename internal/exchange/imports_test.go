package exchange

import (
	"go/build"
	"strings"
	"testing"
)

// The exchange is the bottom of the request path: engines, the router, the
// pipeline, the proxy and the tracer all import it, so it imports none of
// them. Of penstock's packages it may use only tracecontext, a leaf.
func TestImportsNothingAbove(t *testing.T) {
	allowed := map[string]bool{"github.com/penstock-dev/penstock/internal/tracecontext": true}
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range pkg.Imports {
		if strings.HasPrefix(path, "github.com/penstock-dev/penstock/") && !allowed[path] {
			t.Errorf("exchange imports %s", path)
		}
	}
}
