package config

import (
	"errors"
	"fmt"
	"testing"
)

func TestFieldErrorFormat(t *testing.T) {
	tests := []struct {
		err  FieldError
		want string
	}{
		{FieldError{Path: "routes[2].match.path", Line: 41, Msg: `must start with "/"`}, `routes[2].match.path (line 41): must start with "/"`},
		{FieldError{Path: "routes[2].match.path", Line: 41, File: "config.yaml", Msg: "m"}, `config.yaml: routes[2].match.path (line 41): m`},
		{FieldError{Path: "routes[2].match.path", Msg: "m"}, `routes[2].match.path: m`},
		{FieldError{Line: 3, Msg: "m"}, `line 3: m`},
		{FieldError{File: "config.yaml", Msg: "config is empty"}, `config.yaml: config is empty`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestErrorsOrderAndUnwrap(t *testing.T) {
	es := Errors{
		{Path: "c", Msg: "no line"},
		{Path: "b", Line: 7, Msg: "second"},
		{Path: "a", Line: 2, Msg: "first"},
		{Path: "b2", Line: 7, Msg: "third"},
	}
	want := "a (line 2): first\nb (line 7): second\nb2 (line 7): third\nc: no line"
	if got := es.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant:\n%s", got, want)
	}
	if es[0].Path != "c" {
		t.Errorf("Error() reordered its receiver")
	}
	var fe *FieldError
	if !errors.As(fmt.Errorf("load: %w", es), &fe) || fe.Path != "c" {
		t.Errorf("errors.As found %v, want the first FieldError", fe)
	}
}

func TestParentPath(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", "", false},
		{"listeners", "", true},
		{"listeners[0]", "listeners", true},
		{"listeners[0].tls.certificates[1].cert_file", "listeners[0].tls.certificates[1]", true},
		{"routes[0].match.headers.X-Tenant", "routes[0].match.headers", true},
		{`routes[0].match.headers["a.b]"]`, "routes[0].match.headers", true},
		{`routes[0].match.headers["a.b]"].x`, `routes[0].match.headers["a.b]"]`, true},
		{`a["unterminated`, "a", true},
	}
	for _, tt := range tests {
		got, ok := parentPath(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parentPath(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestCollector shows how a package checking a Config further (the gateway
// compiling routes) reports errors that cite the file and line.
func TestCollector(t *testing.T) {
	cfg, err := Parse(text(minimalYAML), "penstock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	col := NewCollector(cfg)
	if col.Err() != nil {
		t.Fatal("empty Collector reported an error")
	}
	col.Addf("routes[0].match.path_prefix", "conflicts with route %q", "other")
	col.Addf("listeners[0].address", "in use")
	col.Add(nil)
	col.Add(errors.New("plain"))
	col.Add(cfg.Errorf("routes[0].match.path", "absent path reports its parent's line"))
	if col.Len() != 4 {
		t.Errorf("Len() = %d, want 4", col.Len())
	}
	want := "penstock.yaml: listeners[0].address (line 3): in use\n" +
		"penstock.yaml: routes[0].match.path (line 10): absent path reports its parent's line\n" +
		`penstock.yaml: routes[0].match.path_prefix (line 11): conflicts with route "other"` + "\n" +
		"penstock.yaml: plain"
	if err := col.Err(); err == nil || err.Error() != want {
		t.Errorf("Err() =\n%v\nwant:\n%s", err, want)
	}

	var zero Collector
	zero.Addf("a.b", "x")
	if err := zero.Err(); err == nil || err.Error() != "a.b: x" {
		t.Errorf("zero Collector Err() = %v", err)
	}
}
