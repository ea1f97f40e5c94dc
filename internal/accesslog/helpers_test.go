package accesslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/router"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// sink collects what the writer goroutine writes.
type sink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// lines returns the lines written so far, without their "\n".
func (s *sink) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	text := s.buf.String()
	if text == "" {
		return nil
	}
	if !strings.HasSuffix(text, "\n") {
		panic("output does not end in a newline: " + strconv.Quote(text))
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

// fakeClock is an injectable time source.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

// parseConfig decodes a configuration from YAML text, as the gateway does.
// Unless the text sets global sampling rules itself, the access log keeps
// every line (the default rules have a test of their own), so tests that
// are not about sampling see every line.
func parseConfig(t testing.TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "test.yaml")
	if err != nil {
		t.Fatalf("config:\n%s\n%v", text, err)
	}
	if reflect.DeepEqual(cfg.AccessLog.Sampling, config.DefaultSamplingRules()) && !strings.Contains(text, "# default rules") {
		cfg.AccessLog.Sampling = []config.SamplingRule{{Name: "all", Keep: true}}
	}
	return cfg
}

// newTestLogger builds a Logger writing to w with a fresh registry.
func newTestLogger(t testing.TB, cfgText string, w io.Writer, now func() time.Time) (*Logger, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := NewWithWriter(parseConfig(t, cfgText), w, now, reg)
	if err != nil {
		t.Fatal(err)
	}
	if l == nil {
		t.Fatal("NewWithWriter returned nil for an enabled access log")
	}
	t.Cleanup(func() { l.Close() })
	return l, reg
}

// counterValue reads one counter series from reg; labels are name, value
// pairs. A missing series is an error: every series this package uses is
// created up front.
func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v, ok := findCounter(t, reg, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

func findCounter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel())*2 != len(labels) {
				continue
			}
			for i := 0; i < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue metric
				}
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func linesTotal(t testing.TB, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	return counterValue(t, reg, "penstock_access_log_lines_total", "result", result)
}

// testRouter gives path parameters as the gateway's router does.
var testRouter = func() *router.Router[int] {
	var b router.Builder[int]
	for _, s := range []router.Spec[int]{
		{Name: "users", Path: "/v1/users/:id"},
		{Name: "models", Path: "/v1/models/:model/predict"},
		{Name: "files", Path: "/files/*rest"},
	} {
		if err := b.Add(s); err != nil {
			panic(err)
		}
	}
	r, err := b.Build()
	if err != nil {
		panic(err)
	}
	return r
}()

// withRoute fills the route fields of r from its path, through the router.
func withRoute(r *Record) *Record {
	ps := new(router.Params)
	res := testRouter.Lookup(r.Host, r.Method, r.Path, nil, ps)
	if res.Found {
		r.Route, r.Pattern, r.Params = res.Name, res.Pattern, ps
	}
	return r
}

// fullRecord is a record with every field set.
func fullRecord() *Record {
	r := &Record{
		Time:         time.Date(2026, 3, 1, 12, 30, 5, 120000000, time.FixedZone("CET", 3600)),
		TraceID:      [16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:       [8]byte{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		Sampled:      true,
		RequestID:    "req-1",
		Proto:        "HTTP/2.0",
		TLSVersion:   0x0304,
		Method:       "POST",
		Host:         "api.example.com",
		Path:         "/v1/models/llama-3/predict",
		Query:        "stream=true&user=ann",
		Status:       502,
		Duration:     1234567891 * time.Nanosecond,
		UpstreamWait: 1500 * time.Microsecond,
		Endpoint:     "10.0.0.5:8080",
		Attempts:     2,
		Arm:          "canary",
		BytesIn:      512,
		BytesOut:     87,
		Client:       netip.MustParseAddrPort("[::ffff:192.0.2.7]:54321"),
		ErrorKind:    "upstream_reset",
		Error:        "read: connection reset by peer",
	}
	return withRoute(r)
}

// decodeJSONLine parses a JSON line and returns its fields and its keys in
// order.
func decodeJSONLine(t testing.TB, line string) (map[string]any, []string) {
	t.Helper()
	var fields map[string]any
	if err := json.Unmarshal([]byte(line), &fields); err != nil {
		t.Fatalf("line is not JSON: %v\n%s", err, line)
	}
	dec := json.NewDecoder(strings.NewReader(line))
	var keys []string
	depth := 0
	expectKey := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' {
				depth++
				expectKey = true
			} else {
				depth--
			}
			continue
		case string:
			if depth == 1 && expectKey {
				keys = append(keys, v)
				expectKey = false
				continue
			}
		}
		expectKey = true
	}
	return fields, keys
}

// decodeLogfmtLine parses a logfmt line strictly: bare values hold no
// space, '"' or '='; quoted values use Go escapes.
func decodeLogfmtLine(t testing.TB, line string) (map[string]string, []string) {
	t.Helper()
	fields := map[string]string{}
	var keys []string
	s := line
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			t.Fatalf("logfmt: no key at %q in\n%s", s, line)
		}
		key := s[:eq]
		if strings.ContainsAny(key, " \"") {
			t.Fatalf("logfmt: bad key %q in\n%s", key, line)
		}
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			end := 1
			for ; end < len(s) && s[end] != '"'; end++ {
				if s[end] == '\\' {
					end++
				}
			}
			if end >= len(s) {
				t.Fatalf("logfmt: unterminated quote in\n%s", line)
			}
			var err error
			if val, err = strconv.Unquote(s[:end+1]); err != nil {
				t.Fatalf("logfmt: %v: %s", err, s[:end+1])
			}
			s = s[end+1:]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val = s[:end]
			if strings.ContainsAny(val, "\"=") {
				t.Fatalf("logfmt: bare value %q needs quotes in\n%s", val, line)
			}
			s = s[end:]
		}
		if _, dup := fields[key]; dup {
			t.Fatalf("logfmt: key %q twice in\n%s", key, line)
		}
		fields[key] = val
		keys = append(keys, key)
		if s != "" {
			if s[0] != ' ' {
				t.Fatalf("logfmt: no space after %s=%q in\n%s", key, val, line)
			}
			s = s[1:]
		}
	}
	return fields, keys
}

// requestID returns the request_id of a JSON line.
func requestID(t testing.TB, line string) string {
	t.Helper()
	var v struct {
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	return v.RequestID
}

func reqID(i int) string { return fmt.Sprintf("req-%d", i) }

// NewWithWriter is New writing to w instead of cfg.AccessLog.Output, and
// reading the time (for the lines-per-second cap) from now, time.Now when
// nil. Reopen does nothing on such a Logger, and Close does not close w.
func NewWithWriter(cfg *config.Config, w io.Writer, now func() time.Time, reg prometheus.Registerer) (*Logger, error) {
	if cfg == nil || !cfg.AccessLog.On() {
		return nil, nil
	}
	if w == nil {
		return nil, errors.New("accesslog: nil writer")
	}
	if now == nil {
		now = time.Now
	}
	return newLogger(cfg, &output{w: w}, now, reg)
}
