package config_test

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/pipeline"
)

// docEntries reads docs/configuration.md's tables: each row's field, in
// its first cell, prefixed with the field path its section's heading names
// ("### `listeners[].tls`" and the row "`min_version`" give
// "listeners.tls.min_version"). Paths are normalized: "[]" is dropped.
func docEntries(t *testing.T) map[string]bool {
	t.Helper()
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile("^#{2,4} [^`]*(?:`([^`]+)`)?")
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	entries := map[string]bool{}
	section := ""
	for line := range strings.SplitSeq(string(doc), "\n") {
		if m := heading.FindStringSubmatch(line); m != nil {
			section = normalize(m[1])
			continue
		}
		if m := row.FindStringSubmatch(line); m != nil && section != "" {
			entries[section+"."+normalize(m[1])] = true
		}
	}
	return entries
}

func normalize(path string) string { return strings.ReplaceAll(path, "[]", "") }

// field is one field of the schema: the paths it is reachable at (a type
// such as SamplingRule appears under several) and whether it holds a
// struct of its own.
type field struct {
	paths  []string
	parent bool
}

// schemaFields walks typ and returns its fields by "Type.Field".
func schemaFields(typ reflect.Type, path string, out map[string]*field, order *[]string) {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct {
		return
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || opts == "inline" {
			continue
		}
		key := typ.String() + "." + f.Name
		fp := path + name
		if out[key] == nil {
			out[key] = &field{}
			*order = append(*order, key)
		}
		out[key].paths = append(out[key].paths, fp)
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out[key].parent = true
			schemaFields(ft, fp+".", out, order)
		}
	}
}

// TestEveryFieldIsDocumented checks that docs/configuration.md has an entry
// of its own, a table row in the section of its block, for every field of
// the schema, the stages' route fields included, so the reference cannot
// fall behind the code; and that every row names a field that exists.
// A field holding a block (tls, limits) may instead have a section whose
// rows document its fields.
func TestEveryFieldIsDocumented(t *testing.T) {
	entries := docEntries(t)
	fields := map[string]*field{}
	var order []string
	schemaFields(reflect.TypeFor[config.Config](), "", fields, &order)
	for _, s := range pipeline.Standard().Stages() {
		schemaFields(s.Settings(), "routes.", fields, &order)
	}
	known := map[string]bool{}
	for _, key := range order {
		f := fields[key]
		documented := f.parent
		for _, p := range f.paths {
			known[p] = true
			documented = documented || entries[p]
		}
		if !documented {
			t.Errorf("docs/configuration.md has no row for %s (%s)", f.paths[0], key)
		}
	}
	var stale []string
	for e := range entries {
		if !known[e] {
			stale = append(stale, e)
		}
	}
	slices.Sort(stale)
	for _, e := range stale {
		t.Errorf("docs/configuration.md documents %s, which is not a field", e)
	}
}
