package config

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"go.yaml.in/yaml/v3"
)

// DecodeStageFields decodes the stage fields of route i (Route.Stages) that
// v names into v, as strictly as the rest of the file: a value of the wrong
// type, a bad duration or size, an unknown field inside a stage's block are
// Errors naming the field path and line, like Parse's. v is a pointer to a
// struct whose yaml tags are route field names ("cache", "early_hints");
// fields of Stages that v does not name are left for other stages. A field
// absent from the file leaves v's field as it is.
func (c *Config) DecodeStageFields(i int, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("config: DecodeStageFields into %T, want a pointer to a struct", v))
	}
	if len(c.Routes[i].Stages) == 0 {
		return nil
	}
	d := &decoder{
		file:      c.file(),
		lines:     map[string]int{},
		budget:    maxDecodeNodes,
		expanding: map[*yaml.Node]bool{},
		merging:   map[*yaml.Node]bool{},
	}
	fields := yamlFields(rv.Elem().Type())
	route := indexPath("routes", i)
	for _, name := range c.stageFieldNames(i) {
		idx, ok := fields[name]
		if !ok {
			continue
		}
		fp := fieldPath(route, name)
		d.lines[fp] = c.Line(fp)
		d.decode(c.Routes[i].Stages[name], rv.Elem().Field(idx), fp)
	}
	if len(d.errs) == 0 {
		return nil
	}
	sortByLine(d.errs)
	return d.errs
}

// CheckStageFields reports the stage fields of route i that are not in
// owned, the fields the stages own, as unknown fields, suggesting the
// closest of the route's own fields and owned.
func (c *Config) CheckStageFields(i int, owned []string) error {
	if len(c.Routes[i].Stages) == 0 {
		return nil
	}
	col := NewCollector(c)
	for _, name := range c.stageFieldNames(i) {
		if !slices.Contains(owned, name) {
			candidates := append(RouteFields(), owned...)
			col.Addf(fieldPath(indexPath("routes", i), name), "unknown field%s", didYouMean(name, candidates))
		}
	}
	return col.Err()
}

// stageFieldNames lists route i's stage fields in the order of the file.
func (c *Config) stageFieldNames(i int) []string {
	route := indexPath("routes", i)
	names := slices.Collect(maps.Keys(c.Routes[i].Stages))
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(c.Line(fieldPath(route, a)), c.Line(fieldPath(route, b))), cmp.Compare(a, b))
	})
	return names
}

// RouteFields lists the fields of a route block that the config itself
// decodes (name, match, upstream, ...), sorted; every other field of a route
// belongs to a stage.
func RouteFields() []string {
	return slices.Sorted(maps.Keys(yamlFields(reflect.TypeFor[Route]())))
}
