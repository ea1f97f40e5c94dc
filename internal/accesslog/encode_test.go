package accesslog

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
)

// The keys of a line, in order; tls, arm, error_kind and error appear only
// when set.
var allKeys = []string{
	"time", "trace_id", "span_id", "request_id", "protocol", "tls", "method", "host",
	"route", "route_pattern", "path", "status", "duration_s", "upstream_wait_s",
	"upstream", "attempts", "arm", "bytes_in", "bytes_out", "client", "error_kind", "error",
}

func keysWithout(omit ...string) []string {
	return slices.DeleteFunc(slices.Clone(allKeys), func(k string) bool { return slices.Contains(omit, k) })
}

func TestLineGolden(t *testing.T) {
	tests := []struct {
		name   string
		format format
		rec    *Record
		want   string
	}{
		{
			name:   "json, every field",
			format: formatJSON,
			rec:    fullRecord(),
			want: `{"time":"2026-03-01T11:30:05.120000000Z","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",` +
				`"request_id":"req-1","protocol":"HTTP/2.0","tls":"1.3","method":"POST","host":"api.example.com","route":"models",` +
				`"route_pattern":"/v1/models/:model/predict","path":"/v1/models/llama-3/predict?stream=true&user=ann","status":502,` +
				`"duration_s":1.234567,"upstream_wait_s":0.001500,"upstream":"10.0.0.5:8080","attempts":2,"arm":"canary","bytes_in":512,"bytes_out":87,` +
				`"client":"192.0.2.7:54321","error_kind":"upstream_reset","error":"read: connection reset by peer"}` + "\n",
		},
		{
			name:   "logfmt, every field",
			format: formatLogfmt,
			rec:    fullRecord(),
			want: `time=2026-03-01T11:30:05.120000000Z trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 ` +
				`request_id=req-1 protocol=HTTP/2.0 tls=1.3 method=POST host=api.example.com route=models ` +
				`route_pattern=/v1/models/:model/predict path="/v1/models/llama-3/predict?stream=true&user=ann" status=502 ` +
				`duration_s=1.234567 upstream_wait_s=0.001500 upstream=10.0.0.5:8080 attempts=2 arm=canary bytes_in=512 bytes_out=87 ` +
				`client=192.0.2.7:54321 error_kind=upstream_reset error="read: connection reset by peer"` + "\n",
		},
		{
			name:   "json, plain connection, no route, no error",
			format: formatJSON,
			rec: &Record{
				Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), RequestID: "r", Proto: "HTTP/1.1", Method: "GET",
				Host: "h", Path: "/x", Status: 404, Duration: 999 * time.Nanosecond,
				Client: netip.MustParseAddrPort("[2001:db8::1]:443"),
			},
			want: `{"time":"2026-01-02T03:04:05.000000006Z","trace_id":"00000000000000000000000000000000","span_id":"0000000000000000",` +
				`"request_id":"r","protocol":"HTTP/1.1","method":"GET","host":"h","route":"","route_pattern":"","path":"/x",` +
				`"status":404,"duration_s":0.000000,"upstream_wait_s":0.000000,"upstream":"","attempts":0,"bytes_in":0,"bytes_out":0,` +
				`"client":"[2001:db8::1]:443"}` + "\n",
		},
		{
			name:   "logfmt, empty values are quoted",
			format: formatLogfmt,
			rec:    &Record{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Status: 499, Duration: 61 * time.Second, ErrorKind: "client_abort"},
			want: `time=2026-01-02T03:04:05.000000000Z trace_id=00000000000000000000000000000000 span_id=0000000000000000 ` +
				`request_id="" protocol="" method="" host="" route="" route_pattern="" path="" status=499 duration_s=61.000000 ` +
				`upstream_wait_s=0.000000 upstream="" attempts=0 bytes_in=0 bytes_out=0 client="" error_kind=client_abort` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendRecord(nil, tt.format, pathFull, tt.rec)); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestPathModes(t *testing.T) {
	routed := withRoute(&Record{Method: "GET", Path: "/v1/users/ann", Query: "fields=email"})
	unrouted := &Record{Method: "GET", Path: "/secret/ann", Query: "token=x"}
	noQuery := withRoute(&Record{Method: "GET", Path: "/v1/users/ann"})
	tests := []struct {
		name string
		mode string
		rec  *Record
		want string
	}{
		{"full with a query", "full", routed, "/v1/users/ann?fields=email"},
		{"full without a query has no ?", "full", noQuery, "/v1/users/ann"},
		{"no_query", "no_query", routed, "/v1/users/ann"},
		{"redacted: the pattern", "redacted", routed, "/v1/users/:id"},
		{"redacted without a route: nothing", "redacted", unrouted, ""},
		{"full without a route", "full", unrouted, "/secret/ann?token=x"},
	}
	for _, tt := range tests {
		for _, f := range []string{"json", "logfmt"} {
			t.Run(tt.name+"/"+f, func(t *testing.T) {
				var out sink
				l, _ := newTestLogger(t, "access_log: {format: "+f+", path: "+tt.mode+"}", &out, nil)
				l.Log(tt.rec)
				l.Close()
				lines := out.lines()
				if len(lines) != 1 {
					t.Fatalf("%d lines", len(lines))
				}
				var got string
				if f == "json" {
					fields, _ := decodeJSONLine(t, lines[0])
					got, _ = fields["path"].(string)
				} else {
					fields, _ := decodeLogfmtLine(t, lines[0])
					got = fields["path"]
				}
				if got != tt.want {
					t.Errorf("path = %q, want %q", got, tt.want)
				}
				if tt.mode != "full" && strings.Contains(lines[0], "ann?") {
					t.Errorf("line has the query: %s", lines[0])
				}
			})
		}
	}
}

func TestLogfmtQuoting(t *testing.T) {
	tests := []struct {
		name, host, want string
	}{
		{"bare", "api.example.com", `host=api.example.com`},
		{"empty", "", `host=""`},
		{"space", "a b", `host="a b"`},
		{"quote", `a"b`, `host="a\"b"`},
		{"equals", "a=b", `host="a=b"`},
		{"backslash", `a\b`, `host="a\\b"`},
		{"newline", "a\nb", `host="a\nb"`},
		{"carriage return and tab", "a\r\tb", `host="a\r\tb"`},
		{"other control characters", "\x00\x1b\x7f", `host="\u0000\u001b\u007f"`},
		{"invalid UTF-8", "a\xffb", `host="a\ufffdb"`},
		{"line separator", "a\u2028b", `host="a\u2028b"`},
		{"UTF-8 stays bare", "bücher.example", `host=bücher.example`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := string(appendRecord(nil, formatLogfmt, pathFull, &Record{Host: tt.host}))
			if !strings.Contains(line, " "+tt.want+" ") {
				t.Errorf("line has no %s:\n%s", tt.want, line)
			}
			fields, _ := decodeLogfmtLine(t, strings.TrimSuffix(line, "\n"))
			if want := strings.ToValidUTF8(tt.host, "\ufffd"); fields["host"] != want {
				t.Errorf("host decodes to %q, want %q", fields["host"], want)
			}
		})
	}
}

// TestHostileValuesStayInTheirField sends values built to end a line, close
// a string or add a field, in every client-supplied field, and checks that
// the line is still one line that decodes to the same values.
func TestHostileValuesStayInTheirField(t *testing.T) {
	hostile := []string{
		"evil.com\n{\"status\":200}",
		"evil.com\r\ntime=0 status=200",
		`evil.com","status":200,"x":"`,
		`evil.com" status=200 x="`,
		"evil\\",
		"evil\u2028\u2029",
		"evil\x00\x1b[31m",
		"evil\xc3\x28",
	}
	for _, f := range []string{"json", "logfmt"} {
		for i, h := range hostile {
			t.Run(f+"/"+string(rune('a'+i)), func(t *testing.T) {
				var out sink
				l, _ := newTestLogger(t, "access_log: {format: "+f+"}", &out, nil)
				l.Log(&Record{Host: h, Method: h, Path: "/" + h, Query: h, RequestID: h, Error: h, ErrorKind: h, Endpoint: h, Status: 201})
				l.Close()
				lines := out.lines()
				if len(lines) != 1 {
					t.Fatalf("%d lines: %q", len(lines), lines)
				}
				if strings.ContainsFunc(lines[0], func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }) {
					t.Errorf("raw control character in %q", lines[0])
				}
				want := strings.ToValidUTF8(h, "\ufffd")
				var get func(k string) string
				var status string
				if f == "json" {
					fields, _ := decodeJSONLine(t, lines[0])
					get = func(k string) string { s, _ := fields[k].(string); return s }
					status = fmt.Sprint(fields["status"])
				} else {
					fields, _ := decodeLogfmtLine(t, lines[0])
					get = func(k string) string { return fields[k] }
					status = fields["status"]
				}
				for _, k := range []string{"host", "method", "request_id", "error", "error_kind", "upstream"} {
					if got := get(k); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
				if got := get("path"); got != "/"+want+"?"+want {
					t.Errorf("path = %q", got)
				}
				if status != "201" {
					t.Errorf("status = %s, want 201", status)
				}
			})
		}
	}
}

// TestOneLinePerRequest logs varied records in both formats and checks one
// decodable line per record, with every key in order.
func TestOneLinePerRequest(t *testing.T) {
	records := stream(500)
	for i, r := range records {
		switch i % 4 {
		case 1:
			r.TLSVersion = 0x0303
		case 2:
			r.ErrorKind, r.Error = "upstream_timeout", "response header timeout after 60s"
		case 3:
			r.Client = netip.MustParseAddrPort("198.51.100.4:40000")
		}
	}
	for _, f := range []string{"json", "logfmt"} {
		t.Run(f, func(t *testing.T) {
			var out sink
			l, reg := newTestLogger(t, "access_log: {format: "+f+"}", &out, nil)
			for _, r := range records {
				l.Log(r)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			lines := out.lines()
			if len(lines) != len(records) {
				t.Fatalf("%d lines for %d requests", len(lines), len(records))
			}
			for i, line := range lines {
				r := records[i]
				var keys []string
				var reqID string
				if f == "json" {
					var fields map[string]any
					fields, keys = decodeJSONLine(t, line)
					reqID, _ = fields["request_id"].(string)
				} else {
					var fields map[string]string
					fields, keys = decodeLogfmtLine(t, line)
					reqID = fields["request_id"]
				}
				var omit []string
				if r.TLSVersion == 0 {
					omit = append(omit, "tls")
				}
				if r.ErrorKind == "" {
					omit = append(omit, "error_kind", "error")
				}
				if r.Arm == "" {
					omit = append(omit, "arm")
				}
				if want := keysWithout(omit...); !slices.Equal(keys, want) {
					t.Fatalf("line %d keys\n%v\nwant\n%v", i, keys, want)
				}
				if reqID != r.RequestID {
					t.Fatalf("line %d is request %q, want %q", i, reqID, r.RequestID)
				}
			}
			if got := linesTotal(t, reg, resultWritten); got != float64(len(records)) {
				t.Errorf("written = %v", got)
			}
		})
	}
}

func TestTimeAndDurationEncoding(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"UTC with nine digits", string(appendTime(nil, time.Date(2026, 12, 31, 23, 59, 59, 1, time.FixedZone("", -5*3600)))), "2027-01-01T04:59:59.000000001Z"},
		{"whole seconds keep their digits", string(appendTime(nil, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))), "2026-06-01T00:00:00.000000000Z"},
		{"microseconds, truncated", string(appendSeconds(nil, 1500*time.Microsecond+999*time.Nanosecond)), "0.001500"},
		{"minutes", string(appendSeconds(nil, 90*time.Second)), "90.000000"},
		{"negative", string(appendSeconds(nil, -2*time.Millisecond)), "-0.002000"},
		{"TLS 1.2", string(appendTLSVersion(nil, 0x0303)), "1.2"},
		{"unknown TLS version", string(appendTLSVersion(nil, 0x7f1c)), "0x7f1c"},
		{"IPv4-mapped client as IPv4", string(appendAddrPort(nil, netip.MustParseAddrPort("[::ffff:10.1.2.3]:80"))), "10.1.2.3:80"},
		{"zone dropped", string(appendAddrPort(nil, netip.MustParseAddrPort("[fe80::1%eth0]:80"))), "[fe80::1]:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}
