// Package pipeline holds the route pipeline: the ordered table of stages
// (early data, body limit, early hints, cache) that run between routing and
// forwarding. Each stage owns its part of a route's configuration: the
// fields, their defaults and their validation live in the stage's file,
// next to its handler, and one line in Standard's table adds it.
package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/metrics"
)

// Standard returns the stage table penstock serves with, in request order:
// the first stage sees the request first. Routing and the request id happen
// before it (they are needed to choose the route and to answer 404s);
// forwarding to the upstream comes after the last stage. A new stage is one
// file and one line here.
func Standard() *Registry {
	reg, err := NewRegistry(
		// cors first: a preflight is answered before anything counts it.
		Define("cors", newCORS),
		Define("grpc_web", newGRPCWeb),
		Define("early_data", newEarlyData),
		Define("rate_limit", newRateLimit),
		Define("body_limit", newBodyLimit),
		Define("tokens", newTokens),
		Define("early_hints", newEarlyHints),
		Define("cache", newCache),
		Define("concurrency", newConcurrency),
	)
	if err != nil {
		panic(err) // the table above is wrong: no config can cause this
	}
	return reg
}

// Settings is what a stage's settings type implements on its pointer. The
// type is a struct whose fields, named by their yaml tags, are the route
// fields the stage owns ("max_request_body", "cache"); each field's doc
// comment is its user documentation, with its unit and default.
type Settings interface {
	// SetDefaults fills every zero field that has a default.
	SetDefaults()
	// Check reports bad values through r.Errorf; it runs after SetDefaults.
	// Values a constructor would have to refuse are reported here, so that
	// `penstock validate` shows them with their lines.
	Check(r *Route)
}

// Stage is one step of the route pipeline, made by Define: its name, its
// settings and its constructor.
type Stage struct {
	name     string
	settings reflect.Type
	fields   []string
	decode   func(cfg *config.Config, i int) (Settings, error)
	build    func(s Settings, r *Route, next exchange.Handler) (exchange.Handler, error)
}

// Define makes the stage called name whose route settings are an S. build
// is called once per route when a config is compiled, never per request,
// with the route's settings decoded, defaulted and checked; it returns next
// unchanged when the stage has nothing to do for the route.
func Define[S any, P interface {
	*S
	Settings
}](name string, build func(s *S, r *Route, next exchange.Handler) (exchange.Handler, error)) Stage {
	t := reflect.TypeFor[S]()
	return Stage{
		name:     name,
		settings: t,
		fields:   yamlNames(t),
		decode: func(cfg *config.Config, i int) (Settings, error) {
			s := P(new(S))
			err := cfg.DecodeStageFields(i, s)
			s.SetDefaults()
			return s, err
		},
		build: func(s Settings, r *Route, next exchange.Handler) (exchange.Handler, error) {
			return build((*S)(s.(P)), r, next)
		},
	}
}

// Name is the stage's name, as errors and docs call it.
func (s Stage) Name() string { return s.name }

// Fields are the route fields the stage owns, in the order of its settings
// type.
func (s Stage) Fields() []string { return slices.Clone(s.fields) }

// Settings returns the stage's settings type (a struct), for documentation.
func (s Stage) Settings() reflect.Type { return s.settings }

// yamlNames lists the yaml names of t's exported fields; a field without
// one gets "" (which NewRegistry refuses).
func yamlNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			names = append(names, name)
		}
	}
	return names
}

// Registry is an ordered table of stages: a route's pipeline runs them in
// this order. It is built once (Standard, or NewRegistry in a test that adds
// its own stage) and never changes; the gateway's compiler is given one.
type Registry struct {
	stages []Stage
	owner  map[string]string // route field → the stage that owns it
	fields []string          // every owned field, for suggestions
}

// NewRegistry makes a table of stages in request order. Each stage needs a
// name of its own, and each route field one owner: a field owned twice, one
// of the route's own fields (name, match, upstream, ...) or a settings field
// without a yaml name is refused.
func NewRegistry(stages ...Stage) (*Registry, error) {
	reg := &Registry{stages: slices.Clone(stages), owner: map[string]string{}}
	names := map[string]bool{}
	var errs []error
	for _, s := range stages {
		switch {
		case s.name == "" || s.build == nil:
			errs = append(errs, errors.New("a stage needs a name and a constructor (use Define)"))
			continue
		case names[s.name]:
			errs = append(errs, fmt.Errorf("stage %q is listed twice", s.name))
		}
		names[s.name] = true
		for _, f := range s.fields {
			switch other, taken := reg.owner[f]; {
			case f == "" || f == "-":
				errs = append(errs, fmt.Errorf("stage %q: a settings field has no yaml name", s.name))
			case taken:
				errs = append(errs, fmt.Errorf("stage %q: route field %q is already owned by stage %q", s.name, f, other))
			case slices.Contains(config.RouteFields(), f):
				errs = append(errs, fmt.Errorf("stage %q: %q is a route field of the config itself", s.name, f))
			default:
				reg.owner[f] = s.name
				reg.fields = append(reg.fields, f)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return reg, nil
}

// Stages returns the table in request order.
func (reg *Registry) Stages() []Stage { return slices.Clone(reg.stages) }

// Check decodes and checks the stage fields of every route of cfg, and
// reports fields no stage owns as unknown. It tolerates a partly decoded
// config (it is a config.Checker); its errors name the field path and line.
func (reg *Registry) Check(cfg *config.Config) error {
	col := config.NewCollector(cfg)
	for i := range cfg.Routes {
		r := reg.route(cfg, i, nil, col)
		reg.settings(r)
	}
	return col.Err()
}

// Build composes the stages for route i of cfg (defaults applied) in front
// of terminal: the route's settings are decoded, defaulted and checked,
// then each stage is built, back to front so that each wraps the one after
// it. Problems with the settings are config.Errors at their fields; a
// constructor's error names its stage. env gives the stages the process's
// metrics, logger and kept state; nil gives none (tests, checks).
func (reg *Registry) Build(cfg *config.Config, i int, terminal exchange.Handler, env *Env) (exchange.Handler, error) {
	col := config.NewCollector(cfg)
	r := reg.route(cfg, i, env, col)
	settings := reg.settings(r)
	if err := col.Err(); err != nil {
		return nil, err
	}
	h := terminal
	for k := len(reg.stages) - 1; k >= 0; k-- {
		next, err := reg.stages[k].build(settings[k], r, h)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", reg.stages[k].name, err)
		}
		h = next
	}
	return h, nil
}

// WithDefaults returns a copy of cfg whose routes hold every stage field,
// decoded and with its defaults filled in, as YAML: the effective
// configuration that GET /config shows, like config.SetDefaults does for
// the rest of the file. cfg is not changed. A route whose stage fields do
// not decode keeps them as written (compiling it fails anyway).
func (reg *Registry) WithDefaults(cfg *config.Config) *config.Config {
	out := *cfg
	out.Routes = slices.Clone(cfg.Routes)
	for i := range out.Routes {
		fields := config.StageFields{}
		for _, st := range reg.stages {
			s, err := st.decode(cfg, i)
			if err != nil {
				fields = nil
				break
			}
			n := valueNode(reflect.ValueOf(s))
			for k := 0; k+1 < len(n.Content); k += 2 {
				if v := n.Content[k+1]; v.Tag != "!!null" {
					fields[n.Content[k].Value] = v
				}
			}
		}
		if fields != nil {
			out.Routes[i].Stages = fields
		}
	}
	return &out
}

var marshalerType = reflect.TypeFor[yaml.Marshaler]()

// valueNode builds the YAML node of a settings value, the way yaml.Marshal
// would write it (a yaml.Marshaler, such as config.ByteSize, writes itself),
// without the encoder's per-call buffers: WithDefaults runs for every route
// of a large config.
func valueNode(v reflect.Value) *yaml.Node {
	scalar := func(tag, value string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
	}
	if v.Kind() != reflect.Pointer && v.Type().Implements(marshalerType) {
		m, err := v.Interface().(yaml.Marshaler).MarshalYAML()
		if err != nil {
			return scalar("!!str", err.Error())
		}
		return valueNode(reflect.ValueOf(m))
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return scalar("!!null", "null")
		}
		return valueNode(v.Elem())
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			n.Content = append(n.Content, scalar("!!str", name), valueNode(v.Field(i)))
		}
		return n
	case reflect.Slice, reflect.Array:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for i := range v.Len() {
			n.Content = append(n.Content, valueNode(v.Index(i)))
		}
		if len(n.Content) > 0 {
			n.Style = 0
		}
		return n
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
		for _, k := range keys {
			n.Content = append(n.Content, scalar("!!str", fmt.Sprint(k)), valueNode(v.MapIndex(k)))
		}
		return n
	case reflect.Bool:
		return scalar("!!bool", strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalar("!!int", strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return scalar("!!int", strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		return scalar("!!float", strconv.FormatFloat(v.Float(), 'g', -1, 64))
	}
	return scalar("!!str", fmt.Sprint(v.Interface()))
}

// settings decodes, defaults and checks route r's settings of every stage,
// in table order, reporting problems to r's collector.
func (reg *Registry) settings(r *Route) []Settings {
	r.col.Add(r.cfg.CheckStageFields(r.index, reg.fields))
	out := make([]Settings, len(reg.stages))
	for k, st := range reg.stages {
		s, err := st.decode(r.cfg, r.index)
		r.col.Add(err)
		s.Check(r)
		out[k] = s
	}
	return out
}

func (reg *Registry) route(cfg *config.Config, i int, env *Env, col *config.Collector) *Route {
	r := &Route{
		Config: &cfg.Routes[i],
		Root:   cfg,
		Path:   fmt.Sprintf("routes[%d]", i),
		Logger: slog.Default(),
		cfg:    cfg,
		index:  i,
		col:    col,
	}
	if env != nil {
		r.Metrics, r.State = env.Metrics, env.State
		if env.Logger != nil {
			r.Logger = env.Logger
		}
	}
	if r.State == nil {
		r.State = NewState(nil)
	}
	return r
}

// Env is what a configuration's stages are built with besides their
// settings.
type Env struct {
	// Metrics receives the stages' metrics; nil records none.
	Metrics *metrics.Metrics
	// Logger receives the stages' log lines; nil means slog.Default().
	Logger *slog.Logger
	// State holds what stages keep across reloads; nil keeps nothing.
	State *State
}

// Route is the route a stage's settings are checked and its handler built
// for.
type Route struct {
	// Config is the route's own block (name, match, upstream, ...).
	Config *config.Route
	// Root is the whole configuration (defaults applied), for stages whose
	// route fields refer to a top-level section by name.
	Root *config.Config
	// Path is the route's field path in the configuration, "routes[2]".
	Path string
	// Metrics receives the stage's metrics (the cache's); nil records none.
	// Unset while settings are only being checked.
	Metrics *metrics.Metrics
	// Logger receives the stage's log lines. Never nil.
	Logger *slog.Logger
	// State holds what the stage keeps across reloads (see State). Never
	// nil; while settings are only being checked it keeps nothing.
	State *State

	cfg   *config.Config
	index int
	col   *config.Collector
}

// Errorf reports a problem with a stage field; field is its path inside
// the route ("cache.max_object_bytes"). The error names the whole path and
// its line, like every other config error:
//
//	routes[2].cache.max_object_bytes (line 14): must not exceed ...
func (r *Route) Errorf(field, format string, args ...any) {
	r.col.Addf(r.Path+"."+field, format, args...)
}

// Pattern returns the route's path pattern: match.path or, if that is
// empty, match.path_prefix.
func (r *Route) Pattern() string {
	if r.Config.Match.Path != "" {
		return r.Config.Match.Path
	}
	return r.Config.Match.PathPrefix
}
