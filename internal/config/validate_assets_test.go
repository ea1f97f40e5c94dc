package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestValidateEarlyHintsPushAndCache(t *testing.T) {
	const head = `
listeners: [{name: web, address: "127.0.0.1:8080"}]
upstreams: [{name: app, endpoints: [{address: "127.0.0.1:9000"}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict"}
    upstream: app
`
	tests := []struct {
		name string
		yaml string // appended to head (route fields, indented 4)
		want []string
	}{
		{
			name: "links with route parameters are valid",
			yaml: `    early_hints:
      - "</v1/models/:model/assets/tokenizer.bin>; rel=preload; as=fetch"
      - "<https://cdn.example.com:8443/static/app.js>; rel=preload; as=script"
    push: {enabled: true, max_resources: 2, max_bytes: 64KiB}
    cache: {enabled: true, max_bytes: 1MiB, max_object_bytes: 64KiB, default_ttl: 30s}
`,
		},
		{
			name: "unknown parameter names the field and the pattern",
			yaml: `    early_hints:
      - "</v1/models/:model/assets/:file>; rel=preload"
`,
			want: []string{`routes[0].early_hints[0] (line 8): parameter ":file" is not in the route's path pattern "/v1/models/:model/predict" (it has :model)`},
		},
		{
			name: "malformed links",
			yaml: `    early_hints:
      - "/v1/models/:model/assets/a.bin; rel=preload"
      - "</v1/a.bin; rel=preload"
      - "<>; rel=preload"
      - "</v1/:/a>; rel=preload"
      - "</a>; rel=preload\r\nX-Injected: 1"
`,
			want: []string{
				`routes[0].early_hints[0] (line 8): must start with "<" (a Link value: "</path>; rel=preload")`,
				`routes[0].early_hints[1] (line 9): has no ">" closing the link target`,
				`routes[0].early_hints[2] (line 10): has an empty link target`,
				`routes[0].early_hints[3] (line 11): has an unnamed parameter at byte 4 of the target`,
				`routes[0].early_hints[4] (line 12): contains control character 0x0d`,
			},
		},
		{
			name: "push without links and a negative bound",
			yaml: `    push: {enabled: true, max_resources: -1}
`,
			want: []string{
				`routes[0].push.max_resources (line 7): must not be negative, got -1`,
				`routes[0].push.enabled (line 7): push sends the route's early_hints targets, and it has none`,
			},
		},
		{
			name: "cache object larger than the cache",
			yaml: `    cache: {enabled: true, max_bytes: 1KiB, max_object_bytes: 2KiB}
`,
			want: []string{
				`routes[0].cache.max_object_bytes (line 7): must not exceed cache.max_bytes (1KiB), got 2KiB`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(text(head+tt.yaml), "")
			if err == nil {
				cfg.SetDefaults()
				err = cfg.Validate()
			}
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !matchLines(got, tt.want, "") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseLinkTemplate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []LinkPart
	}{
		{
			name: "static link is one literal",
			in:   "</a/b.js>; rel=preload",
			want: []LinkPart{{Literal: "</a/b.js>; rel=preload"}},
		},
		{
			name: "parameter segment in the middle",
			in:   "</v1/models/:model/assets/t.bin>; rel=preload; as=fetch",
			want: []LinkPart{{Literal: "</v1/models/"}, {Param: "model"}, {Literal: "/assets/t.bin>; rel=preload; as=fetch"}},
		},
		{
			name: "parameter at the end of the target and before a query",
			in:   "</m/:a/:b?x=1>",
			want: []LinkPart{{Literal: "</m/"}, {Param: "a"}, {Literal: "/"}, {Param: "b"}, {Literal: "?x=1>"}},
		},
		{
			name: "a colon inside a segment is literal",
			in:   "<https://h:8443/x>; rel=preconnect",
			want: []LinkPart{{Literal: "<https://h:8443/x>; rel=preconnect"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLinkTemplate(tt.in)
			if err != nil {
				t.Fatalf("ParseLinkTemplate(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseLinkTemplate(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParseLinkTemplate checks that parsing never panics and that the parts
// of a parsed template rebuild it exactly (parameters written ":name").
func FuzzParseLinkTemplate(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		parts, err := ParseLinkTemplate(in)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, p := range parts {
			if p.Param != "" {
				b.WriteString(":" + p.Param)
			} else {
				b.WriteString(p.Literal)
			}
		}
		if b.String() != in {
			t.Errorf("parts %+v rebuild %q, want %q", parts, b.String(), in)
		}
	})
}
