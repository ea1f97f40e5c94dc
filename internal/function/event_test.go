package function_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/function"
)

func TestEventShape(t *testing.T) {
	r := &function.Request{
		Method: "POST", Scheme: "https", Host: "api.example.com", Path: "/v1/a b", RawQuery: "x=1&x=2&y=%20z&flag",
		Header: [][2]string{{"Content-Type", "application/json"}, {"X-Multi", "a"}, {"x-multi", "b"},
			{"Cookie", "s=1; t=2"}, {"User-Agent", "ua"}},
		Params: map[string]string{"model": "m1"}, Body: []byte(`{"k":1}`),
		SourceIP: netip.MustParseAddr("127.0.0.1"), Proto: "HTTP/1.1", RequestID: "rid",
		Time: time.Unix(1700000000, 0),
	}
	b, err := function.Event(r)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	ctx := ev["requestContext"].(map[string]any)
	httpCtx := ctx["http"].(map[string]any)
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"version", ev["version"], "2.0"},
		{"rawPath", ev["rawPath"], "/v1/a b"},
		{"rawQueryString", ev["rawQueryString"], "x=1&x=2&y=%20z&flag"},
		{"query joined", ev["queryStringParameters"], map[string]any{"x": "1,2", "y": " z", "flag": ""}},
		{"headers lowercased and joined", ev["headers"], map[string]any{"content-type": "application/json", "x-multi": "a,b", "user-agent": "ua"}},
		{"cookies", ev["cookies"], []any{"s=1", "t=2"}},
		{"path parameters", ev["pathParameters"], map[string]any{"model": "m1"}},
		{"text body as is", ev["body"], `{"k":1}`},
		{"not base64", ev["isBase64Encoded"], false},
		{"method", httpCtx["method"], "POST"},
		{"source ip", httpCtx["sourceIp"], "127.0.0.1"},
		{"user agent", httpCtx["userAgent"], "ua"},
		{"request id", ctx["requestId"], "rid"},
		{"domain prefix", ctx["domainPrefix"], "api"},
		{"time epoch", ctx["timeEpoch"], float64(1700000000000)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}

	r.Header = [][2]string{{"Content-Type", "image/png"}}
	r.Body = []byte{0, 1, 2, 0xff}
	b, _ = function.Event(r)
	json.Unmarshal(b, &ev)
	if ev["body"] != "AAEC/w==" || ev["isBase64Encoded"] != true {
		t.Errorf("binary body: %v %v", ev["body"], ev["isBase64Encoded"])
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		status  int
		header  [][2]string
		body    string
		bad     bool
	}{
		{name: "full response", payload: `{"statusCode":201,"headers":{"X-A":"1","Content-Type":"text/plain"},"cookies":["c=1"],"body":"hi"}`,
			status: 201, header: [][2]string{{"Content-Type", "text/plain"}, {"X-A", "1"}, {"Set-Cookie", "c=1"}}, body: "hi"},
		{name: "base64 body", payload: `{"statusCode":200,"body":"aGk=","isBase64Encoded":true}`, status: 200, body: "hi"},
		{name: "multi-value headers", payload: `{"statusCode":200,"multiValueHeaders":{"X-M":["a","b"]}}`,
			status: 200, header: [][2]string{{"X-M", "a"}, {"X-M", "b"}}},
		{name: "JSON without statusCode is a 200 JSON body", payload: `{"hello":"world"}`, status: 200,
			header: [][2]string{{"Content-Type", "application/json"}}, body: `{"hello":"world"}`},
		{name: "a JSON string", payload: `"plain"`, status: 200, header: [][2]string{{"Content-Type", "application/json"}}, body: `"plain"`},
		{name: "not JSON", payload: `hello`, bad: true},
		{name: "empty", payload: ``, bad: true},
		{name: "status is a string", payload: `{"statusCode":"teapot"}`, bad: true},
		{name: "status out of range", payload: `{"statusCode":99}`, bad: true},
		{name: "header value not a string", payload: `{"statusCode":200,"headers":{"X":1}}`, bad: true},
		{name: "header splitting", payload: `{"statusCode":200,"headers":{"X":"a\r\nSet-Cookie: evil"}}`, bad: true},
		{name: "bad header name", payload: `{"statusCode":200,"headers":{"X Y":"a"}}`, bad: true},
		{name: "bad base64", payload: `{"statusCode":200,"body":"!!","isBase64Encoded":true}`, bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := function.ParseResponse([]byte(tc.payload))
			if tc.bad {
				if !errors.Is(err, function.ErrMalformed) {
					t.Fatalf("got %+v, %v; want ErrMalformed", res, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tc.status || string(res.Body) != tc.body || !reflect.DeepEqual(res.Header, tc.header) {
				t.Errorf("got %d %q %q, want %d %q %q", res.Status, res.Header, res.Body, tc.status, tc.header, tc.body)
			}
		})
	}
}

func TestParsePrelude(t *testing.T) {
	res, err := function.ParsePrelude([]byte(`{"statusCode":202,"headers":{"X":"y"},"cookies":["a=b"]}`))
	if err != nil || res.Status != 202 || len(res.Header) != 2 {
		t.Fatalf("got %+v, %v", res, err)
	}
	if res, err = function.ParsePrelude([]byte(`{}`)); err != nil || res.Status != 200 {
		t.Fatalf("empty prelude: %+v, %v", res, err)
	}
	if _, err = function.ParsePrelude([]byte(`{"statusCode":1000}`)); !errors.Is(err, function.ErrMalformed) {
		t.Fatalf("bad status: %v", err)
	}
}

// FuzzParseResponse: no payload panics, and every accepted response has a
// valid status and header fields that cannot split a response.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte(`{"statusCode":200,"headers":{"a":"b"},"cookies":["c=d"],"body":"aGk=","isBase64Encoded":true}`))
	f.Add([]byte(`{"x":1}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		res, err := function.ParseResponse(payload)
		if err != nil {
			if !errors.Is(err, function.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if res.Status < 100 || res.Status > 599 {
			t.Fatalf("status %d", res.Status)
		}
		for _, kv := range res.Header {
			for _, s := range kv {
				for _, c := range []byte(s) {
					if c == '\r' || c == '\n' || c == 0 {
						t.Fatalf("header %q", kv)
					}
				}
			}
		}
	})
}

// FuzzEvent: any request encodes to valid JSON.
func FuzzEvent(f *testing.F) {
	f.Add("GET", "/a", "x=1&y=%zz", "Cookie", "a=1; b", []byte("body"), "text/plain")
	f.Add("POST", "/\xff", "", "X", "\x00", []byte{0xff, 0}, "")
	f.Fuzz(func(t *testing.T, method, path, query, hname, hvalue string, body []byte, ct string) {
		r := &function.Request{Method: method, Path: path, RawQuery: query, Body: body,
			Header: [][2]string{{hname, hvalue}, {"Content-Type", ct}}, Time: time.Unix(0, 0)}
		b, err := function.Event(r)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON %q", b)
		}
	})
}
