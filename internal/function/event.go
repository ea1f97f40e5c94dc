package function

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Request is what an HTTP event is made from: the parts of a client
// request a function sees.
type Request struct {
	Method, Scheme, Host, Path, RawQuery string
	// Header holds the request's fields in order, names as received.
	Header [][2]string
	// Params are the route's path parameters.
	Params map[string]string
	Body   []byte
	// SourceIP is the client's address.
	SourceIP netip.Addr
	// Proto is "HTTP/1.1", "HTTP/2.0" or "HTTP/3.0".
	Proto     string
	RequestID string
	Time      time.Time
}

// httpEvent is the API Gateway HTTP API event, payload format 2.0, which is
// also what a Lambda function URL sends, so handlers written for either
// (events.APIGatewayV2HTTPRequest, events.LambdaFunctionURLRequest) decode
// it unchanged.
type httpEvent struct {
	Version               string            `json:"version"`
	RouteKey              string            `json:"routeKey"`
	RawPath               string            `json:"rawPath"`
	RawQueryString        string            `json:"rawQueryString"`
	Cookies               []string          `json:"cookies,omitempty"`
	Headers               map[string]string `json:"headers"`
	QueryStringParameters map[string]string `json:"queryStringParameters,omitempty"`
	PathParameters        map[string]string `json:"pathParameters,omitempty"`
	RequestContext        eventContext      `json:"requestContext"`
	Body                  string            `json:"body,omitempty"`
	IsBase64Encoded       bool              `json:"isBase64Encoded"`
}

type eventContext struct {
	AccountID    string    `json:"accountId"`
	APIID        string    `json:"apiId"`
	DomainName   string    `json:"domainName"`
	DomainPrefix string    `json:"domainPrefix"`
	HTTP         eventHTTP `json:"http"`
	RequestID    string    `json:"requestId"`
	RouteKey     string    `json:"routeKey"`
	Stage        string    `json:"stage"`
	Time         string    `json:"time"`
	TimeEpoch    int64     `json:"timeEpoch"`
}

type eventHTTP struct {
	Method    string `json:"method"`
	Path      string `json:"path"`
	Protocol  string `json:"protocol"`
	SourceIP  string `json:"sourceIp"`
	UserAgent string `json:"userAgent"`
}

// Event encodes r as an API Gateway v2 (function URL) HTTP event, as AWS
// does: header names lowercased, repeated headers joined with commas,
// cookies split out of Cookie into their own list, repeated query
// parameters joined with commas, and a body that is not text base64
// encoded.
func Event(r *Request) ([]byte, error) {
	ev := httpEvent{
		Version:        "2.0",
		RouteKey:       "$default",
		RawPath:        r.Path,
		RawQueryString: r.RawQuery,
		Headers:        make(map[string]string, len(r.Header)),
		PathParameters: r.Params,
		RequestContext: eventContext{
			AccountID:  "anonymous",
			APIID:      "penstock",
			DomainName: r.Host,
			HTTP: eventHTTP{
				Method:   r.Method,
				Path:     r.Path,
				Protocol: r.Proto,
			},
			RequestID: r.RequestID,
			RouteKey:  "$default",
			Stage:     "$default",
			Time:      r.Time.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch: r.Time.UnixMilli(),
		},
	}
	if r.SourceIP.IsValid() {
		ev.RequestContext.HTTP.SourceIP = r.SourceIP.String()
	}
	if host, _, ok := strings.Cut(r.Host, "."); ok {
		ev.RequestContext.DomainPrefix = host
	} else {
		ev.RequestContext.DomainPrefix = r.Host
	}
	contentType := ""
	for _, f := range r.Header {
		name := strings.ToLower(f[0])
		if name == "cookie" {
			for c := range strings.SplitSeq(f[1], ";") {
				if c = strings.TrimSpace(c); c != "" {
					ev.Cookies = append(ev.Cookies, c)
				}
			}
			continue
		}
		if prev, ok := ev.Headers[name]; ok {
			ev.Headers[name] = prev + "," + f[1]
		} else {
			ev.Headers[name] = f[1]
		}
		switch name {
		case "user-agent":
			ev.RequestContext.HTTP.UserAgent = f[1]
		case "content-type":
			contentType = f[1]
		}
	}
	if r.RawQuery != "" {
		ev.QueryStringParameters = map[string]string{}
		for kv := range strings.SplitSeq(r.RawQuery, "&") {
			if kv == "" {
				continue
			}
			k, v, _ := strings.Cut(kv, "=")
			k, v = unescapeQuery(k), unescapeQuery(v)
			if prev, ok := ev.QueryStringParameters[k]; ok {
				ev.QueryStringParameters[k] = prev + "," + v
			} else {
				ev.QueryStringParameters[k] = v
			}
		}
	}
	if len(r.Body) > 0 {
		if isText(contentType) {
			ev.Body = string(r.Body)
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(r.Body)
			ev.IsBase64Encoded = true
		}
	}
	return json.Marshal(&ev)
}

// unescapeQuery decodes a query component, keeping it as written when it is
// not valid percent-encoding (AWS passes such values through too).
func unescapeQuery(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// isText reports whether a body of this content type travels as text in
// the event; anything else, an absent type included, is base64 encoded so
// binary bodies survive JSON.
func isText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"),
		mt == "application/json", strings.HasSuffix(mt, "+json"),
		mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/javascript", mt == "application/x-www-form-urlencoded":
		return true
	}
	return false
}

// Response is the HTTP response a function's result maps to.
type Response struct {
	Status int
	// Header holds the fields to send, in a stable order.
	Header [][2]string
	Body   []byte
}

// ErrMalformed wraps every reason a function's result cannot be made into
// an HTTP response.
var ErrMalformed = errors.New("malformed function response")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// httpResult is the response shape of payload format 2.0 (and function
// URLs). multiValueHeaders is payload 1.0's, accepted too.
type httpResult struct {
	StatusCode        *int                `json:"statusCode"`
	Headers           map[string]string   `json:"headers"`
	MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
	Cookies           []string            `json:"cookies"`
	Body              *string             `json:"body"`
	IsBase64Encoded   bool                `json:"isBase64Encoded"`
}

// ParseResponse maps a function's buffered result to an HTTP response as
// API Gateway does for payload format 2.0: a JSON object with statusCode
// is a response (headers, cookies as Set-Cookie, body, base64 bodies
// decoded); any other valid JSON is a 200 application/json body as
// returned. Invalid JSON, a status outside 100–599, fields of the wrong
// type and bad base64 are ErrMalformed.
func ParseResponse(payload []byte) (*Response, error) {
	payload = bytes.TrimSpace(payload)
	if !json.Valid(payload) {
		return nil, malformed("not JSON")
	}
	if len(payload) == 0 || payload[0] != '{' || !hasKey(payload, "statusCode") {
		return &Response{Status: 200, Header: [][2]string{{"Content-Type", "application/json"}}, Body: payload}, nil
	}
	var res httpResult
	if err := json.Unmarshal(payload, &res); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, malformed("field %s has the wrong type (%s)", te.Field, te.Value)
		}
		return nil, malformed("%v", err)
	}
	return res.response()
}

func (res *httpResult) response() (*Response, error) {
	if res.StatusCode == nil || *res.StatusCode < 100 || *res.StatusCode > 599 {
		return nil, malformed("statusCode must be an integer between 100 and 599")
	}
	out := &Response{Status: *res.StatusCode}
	for _, k := range slices.Sorted(maps.Keys(res.Headers)) {
		if !validField(k, res.Headers[k]) {
			return nil, malformed("invalid header %q", k)
		}
		out.Header = append(out.Header, [2]string{k, res.Headers[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(res.MultiValueHeaders)) {
		if _, dup := res.Headers[k]; dup {
			continue // headers wins, as in API Gateway
		}
		for _, v := range res.MultiValueHeaders[k] {
			if !validField(k, v) {
				return nil, malformed("invalid header %q", k)
			}
			out.Header = append(out.Header, [2]string{k, v})
		}
	}
	for _, c := range res.Cookies {
		if !validField("Set-Cookie", c) {
			return nil, malformed("invalid cookie %q", c)
		}
		out.Header = append(out.Header, [2]string{"Set-Cookie", c})
	}
	if res.Body != nil {
		if res.IsBase64Encoded {
			b, err := base64.StdEncoding.DecodeString(*res.Body)
			if err != nil {
				return nil, malformed("isBase64Encoded but the body is not base64: %v", err)
			}
			out.Body = b
		} else {
			out.Body = []byte(*res.Body)
		}
	}
	return out, nil
}

// StreamPrelude is the head of a streamed HTTP response (Lambda's
// "application/vnd.awslambda.http-integration-response"): this JSON, then
// eight NUL bytes, then the body.
type StreamPrelude struct {
	StatusCode *int              `json:"statusCode"`
	Headers    map[string]string `json:"headers"`
	Cookies    []string          `json:"cookies"`
}

// preludeDelimiter ends a streamed response's prelude.
var preludeDelimiter = []byte{0, 0, 0, 0, 0, 0, 0, 0}

// ParsePrelude maps a streamed response's prelude to a status and header;
// a missing statusCode means 200, as Lambda does.
func ParsePrelude(b []byte) (*Response, error) {
	var p StreamPrelude
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, malformed("stream prelude: %v", err)
	}
	if p.StatusCode == nil {
		ok := 200
		p.StatusCode = &ok
	}
	res := httpResult{StatusCode: p.StatusCode, Headers: p.Headers, Cookies: p.Cookies}
	return res.response()
}

// hasKey reports whether the JSON object obj has key at its top level.
func hasKey(obj []byte, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}

// validField reports whether name and value may be sent as a header field
// (RFC 9110 §5.1 and §5.5): a token name, and a value without CR, LF or NUL,
// so a function cannot split the response.
func validField(name, value string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return !strings.ContainsAny(value, "\r\n\x00")
}
