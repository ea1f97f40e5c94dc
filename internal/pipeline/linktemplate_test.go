package pipeline

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseLinkTemplate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []linkPart
	}{
		{
			name: "static link is one literal",
			in:   "</a/b.js>; rel=preload",
			want: []linkPart{{Literal: "</a/b.js>; rel=preload"}},
		},
		{
			name: "parameter segment in the middle",
			in:   "</v1/models/:model/assets/t.bin>; rel=preload; as=fetch",
			want: []linkPart{{Literal: "</v1/models/"}, {Param: "model"}, {Literal: "/assets/t.bin>; rel=preload; as=fetch"}},
		},
		{
			name: "parameter at the end of the target and before a query",
			in:   "</m/:a/:b?x=1>",
			want: []linkPart{{Literal: "</m/"}, {Param: "a"}, {Literal: "/"}, {Param: "b"}, {Literal: "?x=1>"}},
		},
		{
			name: "a colon inside a segment is literal",
			in:   "<https://h:8443/x>; rel=preconnect",
			want: []linkPart{{Literal: "<https://h:8443/x>; rel=preconnect"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLinkTemplate(tt.in)
			if err != nil {
				t.Fatalf("parseLinkTemplate(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseLinkTemplate(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParseLinkTemplate checks that parsing never panics and that the parts
// of a parsed template rebuild it exactly (parameters written ":name").
func FuzzParseLinkTemplate(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		parts, err := parseLinkTemplate(in)
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
