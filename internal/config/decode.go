package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads and decodes the configuration file at path, strictly, with
// defaults applied. It does not validate a file that decodes cleanly:
// penstock's compiler (snapshot.Compile) does, once, when it builds the
// snapshot; call Validate for a check without compiling. When decoding
// fails, Validate and the extra checks run on what did decode and their
// errors are reported with the decoding errors (see Merge), so one pass
// shows every problem of the file.
func Load(path string, extra ...Checker) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Check(data, path, extra...)
	if cfg != nil && cfg.src != nil {
		cfg.src.onDisk = true
	}
	return cfg, err
}

// Checker is a check beyond Validate that another package runs on a Config,
// such as compiling its routes. It must tolerate a partly decoded Config and
// report problems as Errors built with Config.Errorf.
type Checker func(*Config) error

// Check is Load for a configuration already in memory.
func Check(data []byte, filename string, extra ...Checker) (*Config, error) {
	cfg, decodeErrs, err := parse(data, filename)
	if err != nil {
		return nil, err
	}
	if len(decodeErrs) == 0 {
		return cfg, nil
	}
	errs := Merge(decodeErrs, cfg.Validate())
	for _, check := range extra {
		errs = Merge(errs, check(cfg))
	}
	return nil, errs
}

// Merge adds the errors of more to errs, leaving out those on or under a
// field that errs already reports (they would only restate it), and returns
// the result sorted by line. more may be nil, an Errors, a *FieldError or any
// other error.
func Merge(errs Errors, more error) Errors {
	var add Errors
	switch e := more.(type) {
	case nil:
	case Errors:
		add = e
	case *FieldError:
		add = Errors{e}
	default:
		add = Errors{&FieldError{Msg: more.Error()}}
	}
	base := len(errs)
	for _, e := range add {
		if e.Path == "" || !underAny(e.Path, errs[:base]) {
			errs = append(errs, e)
		}
	}
	sortByLine(errs)
	return errs
}

// Parse decodes one YAML document into a Config, strictly, and fills in
// defaults (see SetDefaults). filename is used only in error messages and
// may be empty.
//
// Decoding is strict: every unknown field, value of the wrong type, bad
// duration or size and duplicate key is reported, not just the first, as an
// Errors whose entries name the field path and line. An empty file, more than
// one YAML document, and YAML syntax errors are errors too. Anchors, aliases
// and merge keys ("<<") are supported; top-level keys starting with "x-" are
// ignored, to hold anchors.
//
// Parse does not check the values against each other (unknown upstreams,
// duplicate names, missing files) of a file that decodes cleanly; call
// Validate on the result for that. When decoding fails, those checks are run
// on what did decode and reported with the decoding errors, so one run shows
// every problem.
// The returned Config remembers the line of each field, for Line, Errorf and
// the errors of Validate.
func Parse(data []byte, filename string) (*Config, error) {
	cfg, decodeErrs, err := parse(data, filename)
	if err != nil {
		return nil, err
	}
	if len(decodeErrs) > 0 {
		return nil, decodeErrs
	}
	return cfg, nil
}

// parse decodes data as far as it can. It returns the partly decoded Config
// (defaults applied) with the decoding errors, or err when the document
// could not be read at all.
func parse(data []byte, filename string) (cfg *Config, decodeErrs Errors, err error) {
	root, err := parseDocument(data, filename)
	if err != nil {
		return nil, nil, err
	}
	d := &decoder{
		file:      filename,
		lines:     map[string]int{"": root.Line},
		budget:    maxDecodeNodes,
		expanding: map[*yaml.Node]bool{},
		merging:   map[*yaml.Node]bool{},
	}
	cfg = &Config{}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	cfg.src = &source{file: filename, lines: d.lines}
	cfg.SetDefaults()
	sortByLine(d.errs)
	return cfg, d.errs, nil
}

// underAny reports whether path is one of errs' paths or below one.
func underAny(path string, errs Errors) bool {
	for _, e := range errs {
		if path == e.Path || strings.HasPrefix(path, e.Path+".") || strings.HasPrefix(path, e.Path+"[") {
			return true
		}
	}
	return false
}

// extensionPrefix starts top-level keys that are ignored rather than
// reported as unknown, so a file can define YAML anchors in one place
// ("x-timeouts: &timeouts {...}") and use them in several blocks.
const extensionPrefix = "x-"

// maxDecodeNodes bounds the nodes visited while decoding. Aliases let a small
// file name the same subtree many times over ("billion laughs"); the bound
// keeps such a file from costing more than a fraction of a second.
const maxDecodeNodes = 1 << 20

// parseDocument parses data as exactly one YAML document and returns its
// root node.
func parseDocument(data []byte, filename string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decodeNode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: filename, Msg: "config is empty"}}
		}
		return nil, syntaxError(err, filename)
	}
	var extra yaml.Node
	switch err := decodeNode(dec, &extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(err, filename)
	default:
		return nil, Errors{{File: filename, Line: extra.Line, Msg: "a second YAML document starts here; a config file holds exactly one"}}
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, Errors{{File: filename, Line: doc.Line, Msg: "config is empty"}}
	}
	return doc.Content[0], nil
}

// decodeNode reads the next document. The YAML library has panicked on
// malformed input in the past; a config file must never crash the process
// that checks it, so such a panic becomes an error.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

// syntaxError turns the YAML library's "yaml: line N: msg" into a FieldError
// carrying the line.
func syntaxError(err error, filename string) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, after
			}
		}
	}
	return Errors{{File: filename, Line: line, Msg: "invalid YAML: " + msg}}
}

// decoder walks a YAML node tree alongside the Go value it fills, recording
// the line of every field path and collecting every error.
type decoder struct {
	file  string
	lines map[string]int
	errs  Errors
	// budget is the number of nodes left to visit (see maxDecodeNodes).
	budget int
	// expanding holds the alias targets being decoded and merging the
	// mappings whose merge keys are being expanded, to detect an alias or
	// merge key that refers to its own ancestor.
	expanding, merging map[*yaml.Node]bool
}

// spend uses one node of the budget, reporting once when it runs out.
func (d *decoder) spend(path string, line int) bool {
	d.budget--
	if d.budget == -1 {
		d.errorf(path, line, "config too large after expanding aliases (more than %d values)", maxDecodeNodes)
	}
	return d.budget >= 0
}

func (d *decoder) errorf(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Path: path, Line: line, File: d.file, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) typeError(path string, n *yaml.Node, want string) {
	d.errorf(path, d.lineOf(path, n), "must be %s, got %s", want, kindName(n))
}

// lineOf is the line to cite for a problem with the value at path: where the
// field was written, which for a value reached through an alias is the
// alias, not the anchor.
func (d *decoder) lineOf(path string, n *yaml.Node) int {
	if line, ok := d.lines[path]; ok {
		return line
	}
	return n.Line
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decode fills v from n. The caller has recorded path's line.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.spend(path, n.Line) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || d.expanding[n.Alias] {
			d.errorf(path, d.lineOf(path, n), "alias *%s refers to a value that contains it", n.Value)
			return
		}
		d.expanding[n.Alias] = true
		defer delete(d.expanding, n.Alias)
		d.decode(n.Alias, v, path)
		return
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.errorf(path, d.lineOf(path, n), "%v", err)
		}
		return
	}

	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)

	case reflect.Struct:
		d.decodeStruct(n, v, path)

	case reflect.Slice:
		if isNull(n) {
			v.SetZero()
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.typeError(path, n, "a list")
			return
		}
		if len(n.Content) == 0 {
			// An empty list means the same as an absent one (the default),
			// and nil keeps a decoded Config equal to one built in Go.
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := indexPath(path, i)
			d.lines[p] = item.Line
			d.decode(item, s.Index(i), p)
		}
		v.Set(s)

	case reflect.Map:
		if isNull(n) {
			v.SetZero()
			return
		}
		if n.Kind != yaml.MappingNode {
			d.typeError(path, n, "a mapping")
			return
		}
		pairs := d.mappingPairs(n, path, n.Line)
		if len(pairs) == 0 {
			// As for lists: empty is absent.
			v.SetZero()
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(pairs))
		for _, p := range pairs {
			kp := keyPath(path, p.key)
			d.lines[kp] = p.keyNode.Line
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(p.value, elem, kp)
			m.SetMapIndex(reflect.ValueOf(p.key).Convert(v.Type().Key()), elem)
		}
		v.Set(m)

	case reflect.String:
		// Any scalar reads as its text, so `min_version: 1.3` (a YAML number)
		// means the string "1.3" as the user intended.
		switch {
		case isNull(n):
			v.SetString("")
		case n.Kind == yaml.ScalarNode:
			v.SetString(n.Value)
		default:
			d.typeError(path, n, "a string")
		}

	case reflect.Bool:
		var b bool
		switch {
		case isNull(n):
		case n.Kind != yaml.ScalarNode || n.ShortTag() != boolTag || n.Decode(&b) != nil:
			d.typeError(path, n, "true or false")
			return
		}
		v.SetBool(b)

	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		switch {
		case isNull(n):
		case n.Kind != yaml.ScalarNode || n.ShortTag() != intTag:
			d.typeError(path, n, "an integer")
			return
		case n.Decode(&i) != nil || v.OverflowInt(i):
			d.errorf(path, d.lineOf(path, n), "integer %s is out of range", n.Value)
			return
		}
		v.SetInt(i)

	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var i int64
		switch {
		case isNull(n):
		case n.Kind != yaml.ScalarNode || n.ShortTag() != intTag:
			d.typeError(path, n, "a non-negative integer")
			return
		case n.Decode(&i) != nil || i >= 0 && v.OverflowUint(uint64(i)):
			d.errorf(path, d.lineOf(path, n), "integer %s is out of range", n.Value)
			return
		case i < 0:
			d.errorf(path, d.lineOf(path, n), "must not be negative, got %s", n.Value)
			return
		}
		v.SetUint(uint64(i))

	case reflect.Float32, reflect.Float64:
		var f float64
		switch {
		case isNull(n):
		case n.Kind != yaml.ScalarNode || (n.ShortTag() != floatTag && n.ShortTag() != intTag):
			d.typeError(path, n, "a number")
			return
		case n.Decode(&f) != nil || math.IsNaN(f) || math.IsInf(f, 0):
			d.errorf(path, d.lineOf(path, n), "%s is not a finite number", n.Value)
			return
		}
		v.SetFloat(f)

	default:
		// Only reachable if schema.go gains a field type this decoder does
		// not know; report it rather than silently dropping the value.
		d.errorf(path, d.lineOf(path, n), "cannot decode into %s", v.Type())
	}
}

// decodeStruct fills the struct v from the mapping n, reporting unknown keys.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		if path == "" {
			d.errorf("", n.Line, "the config must be a mapping of top-level fields (listeners, upstreams, routes, ...), got %s", kindName(n))
			return
		}
		d.typeError(path, n, "a mapping")
		return
	}
	fields := yamlFields(v.Type())
	stages, hasStages := stageFieldsOf(v)
	for _, p := range d.mappingPairs(n, path, n.Line) {
		fp := fieldPath(path, p.key)
		if path == "" && strings.HasPrefix(p.key, extensionPrefix) {
			// A home for anchors shared by several blocks; see
			// extensionPrefix.
			continue
		}
		idx, ok := fields[p.key]
		if !ok && hasStages {
			// A stage's field: kept as written for its stage to decode,
			// with the lines of everything in it, so the stage's errors
			// cite them (see DecodeStageFields).
			if stages.IsNil() {
				stages.Set(reflect.MakeMap(stages.Type()))
			}
			stages.SetMapIndex(reflect.ValueOf(p.key), reflect.ValueOf(p.value))
			d.lines[fp] = p.keyNode.Line
			d.recordLines(p.value, fp)
			continue
		}
		if !ok {
			names := make([]string, 0, len(fields))
			for name := range fields {
				names = append(names, name)
			}
			d.errorf(fp, p.keyNode.Line, "unknown field%s", didYouMean(p.key, names))
			continue
		}
		d.lines[fp] = p.keyNode.Line
		d.decode(p.value, v.Field(idx), fp)
	}
}

var stageFieldsType = reflect.TypeFor[StageFields]()

// stageFieldsOf returns the StageFields field of the struct v, which takes
// the keys v's own fields do not name.
func stageFieldsOf(v reflect.Value) (reflect.Value, bool) {
	for i := range v.NumField() {
		if v.Type().Field(i).Type == stageFieldsType {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// recordLines records the line of every field and list item under n, a
// value kept undecoded, the way decode records them for decoded values.
// Problems inside n (a duplicate key, an alias to its own ancestor, too many
// nodes) are reported here too: they are errors of the file, whoever reads
// the value.
func (d *decoder) recordLines(n *yaml.Node, path string) {
	if !d.spend(path, n.Line) {
		return
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias == nil || d.expanding[n.Alias] {
			d.errorf(path, d.lineOf(path, n), "alias *%s refers to a value that contains it", n.Value)
			return
		}
		d.expanding[n.Alias] = true
		defer delete(d.expanding, n.Alias)
		d.recordLines(n.Alias, path)
	case yaml.MappingNode:
		for _, p := range d.mappingPairs(n, path, n.Line) {
			kp := keyPath(path, p.key)
			d.lines[kp] = p.keyNode.Line
			d.recordLines(p.value, kp)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := indexPath(path, i)
			d.lines[p] = item.Line
			d.recordLines(item, p)
		}
	}
}

// yamlFields maps the yaml names of t's exported fields to their indexes.
// Inline fields (the StageFields of a route) have no name of their own.
func yamlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || opts == "inline" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = i
	}
	return fields
}

// pair is one key and value of a mapping.
type pair struct {
	key     string
	keyNode *yaml.Node
	value   *yaml.Node
}

// mappingPairs lists the entries of the mapping n with merge keys ("<<")
// expanded: the mapping's own keys win over merged ones, and earlier merged
// mappings win over later ones, as YAML's merge key type specifies. A key
// written twice in the same mapping is an error. line is where n was
// reached from, for errors about n as a whole.
func (d *decoder) mappingPairs(n *yaml.Node, path string, line int) []pair {
	if d.merging[n] {
		d.errorf(path, line, "merge key refers to a mapping that contains it")
		return nil
	}
	d.merging[n] = true
	defer delete(d.merging, n)

	var out []pair
	seen := map[string]int{}
	var merges []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.spend(path, k.Line) {
			return out
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == mergeTag {
			merges = append(merges, pair{keyNode: k, value: val})
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(path, k.Line, "keys must be plain strings, got %s", kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(keyPath(path, k.Value), k.Line, "duplicate key (first set at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, pair{key: k.Value, keyNode: k, value: val})
	}
	for _, m := range merges {
		for _, src := range d.mergeSources(m.value, path, m.keyNode.Line) {
			for _, p := range d.mappingPairs(src, path, m.keyNode.Line) {
				if _, dup := seen[p.key]; !dup {
					seen[p.key] = p.keyNode.Line
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// mergeSources returns the mappings a merge key's value names: one mapping
// (usually an alias) or a list of them. line is the merge key's.
func (d *decoder) mergeSources(n *yaml.Node, path string, line int) []*yaml.Node {
	n = resolveAlias(n)
	switch {
	case n.Kind == yaml.MappingNode:
		return []*yaml.Node{n}
	case n.Kind == yaml.SequenceNode:
		var out []*yaml.Node
		for _, item := range n.Content {
			if item = resolveAlias(item); item.Kind == yaml.MappingNode {
				out = append(out, item)
			} else {
				d.errorf(path, line, "merge key (<<) needs a mapping or a list of mappings, got %s", kindName(item))
			}
		}
		return out
	}
	d.errorf(path, line, "merge key (<<) needs a mapping or a list of mappings, got %s", kindName(n))
	return nil
}

// resolveAlias follows aliases to the node they name. The parser only lets
// an alias name an anchor defined before it, so the chain is finite.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == nullTag
}
