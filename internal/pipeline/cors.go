package pipeline

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// CORSSettings are the cors stage's route fields.
type CORSSettings struct {
	// CORS lets pages from other origins call the route (the Fetch
	// standard's CORS protocol): penstock answers the browser's preflights
	// itself and adds the Access-Control-* fields to the route's responses,
	// penstock's own refusals included. Default none: cross-origin pages
	// get no access unless the upstream answers CORS.
	CORS *RouteCORS `yaml:"cors"`
}

// RouteCORS is a route's CORS policy.
//
// A preflight (an OPTIONS request with Origin and
// Access-Control-Request-Method) is routed as the request it announces,
// so the route that serves a POST also answers the preflight of that POST,
// whatever methods it matches; it is answered 204 and never forwarded.
// Other requests carrying an Origin this policy allows get
// Access-Control-Allow-Origin (and the fields below) on their response; an
// upstream on such a route should not answer CORS itself.
type RouteCORS struct {
	// AllowOrigins lists the origins whose pages may call the route, each
	// "scheme://host" or "scheme://host:port" as the browser sends it in
	// Origin (compared case-insensitively), or "*" for any origin. Default
	// none (required).
	AllowOrigins []string `yaml:"allow_origins"`
	// AllowHeaders lists the request fields a page may send (the
	// preflight's answer). Default: whatever the preflight asks for.
	AllowHeaders []string `yaml:"allow_headers"`
	// ExposeHeaders lists the response fields a page may read besides the
	// few every response exposes. Default: grpc-status and grpc-message,
	// which gRPC-Web clients read from the header of a trailers-only
	// response (add the names of custom header metadata).
	ExposeHeaders []string `yaml:"expose_headers"`
	// AllowCredentials lets pages send cookies and HTTP authentication
	// (bool); the allowed origin is then named, never "*". Default false.
	AllowCredentials bool `yaml:"allow_credentials"`
	// MaxAge bounds how long a browser may keep a preflight's answer
	// (duration; browsers cap it, Chromium at 2h). Default 10m.
	MaxAge config.Duration `yaml:"max_age"`
}

// DefaultCORSMaxAge is RouteCORS.MaxAge's default.
const DefaultCORSMaxAge = config.Duration(10 * time.Minute)

// SetDefaults implements Settings.
func (s *CORSSettings) SetDefaults() {
	c := s.CORS
	if c == nil {
		return
	}
	if c.ExposeHeaders == nil {
		c.ExposeHeaders = []string{"grpc-status", "grpc-message"}
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultCORSMaxAge
	}
}

// Check implements Settings.
func (s *CORSSettings) Check(r *Route) {
	c := s.CORS
	if c == nil {
		return
	}
	if len(c.AllowOrigins) == 0 {
		r.Errorf("cors.allow_origins", "is required: the origins whose pages may call the route, or \"*\"")
	}
	for j, o := range c.AllowOrigins {
		field := "cors.allow_origins[" + strconv.Itoa(j) + "]"
		if o == "*" {
			if c.AllowCredentials {
				r.Errorf(field, "\"*\" cannot be combined with allow_credentials: name the origins")
			}
			continue
		}
		if err := checkOrigin(o); err != "" {
			r.Errorf(field, "%q %s", o, err)
		}
	}
	for j, h := range c.AllowHeaders {
		if !validToken(h) {
			r.Errorf("cors.allow_headers["+strconv.Itoa(j)+"]", "%q is not a field name", h)
		}
	}
	for j, h := range c.ExposeHeaders {
		if !validToken(h) {
			r.Errorf("cors.expose_headers["+strconv.Itoa(j)+"]", "%q is not a field name", h)
		}
	}
}

// checkOrigin explains what is wrong with an origin, or returns "".
func checkOrigin(o string) string {
	u, err := url.Parse(o)
	switch {
	case err != nil:
		return "is not an origin: " + err.Error()
	case u.Scheme != "http" && u.Scheme != "https":
		return "is not an origin: want http://host or https://host[:port]"
	case u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "is not an origin: only scheme://host[:port], no path"
	case strings.HasSuffix(o, "/"):
		return "has a trailing slash; browsers send the origin without one"
	}
	return ""
}

// validToken reports a field name (RFC 9110 §5.6.2 token).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// cors is the stage of a route with a cors policy. The field values are
// joined once here, not per request.
type cors struct {
	anyOrigin   bool
	origins     []string
	allowHdrs   string // "" reflects the preflight's request
	exposeHdrs  string
	credentials bool
	maxAge      string
	next        exchange.Handler
}

func newCORS(s *CORSSettings, _ *Route, next exchange.Handler) (exchange.Handler, error) {
	c := s.CORS
	if c == nil {
		return next, nil
	}
	h := &cors{
		allowHdrs:   strings.Join(c.AllowHeaders, ", "),
		exposeHdrs:  strings.Join(c.ExposeHeaders, ", "),
		credentials: c.AllowCredentials,
		maxAge:      strconv.FormatInt(int64(c.MaxAge.D()/time.Second), 10),
		next:        next,
	}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			h.anyOrigin = true
		} else {
			h.origins = append(h.origins, o)
		}
	}
	return h, nil
}

// AnswersPreflights reports whether a route's pipeline (h, as
// Registry.Build returned it) answers CORS preflights: the route has a
// cors policy. cors is the first stage of Standard, so its handler is the
// pipeline's outermost.
func AnswersPreflights(h exchange.Handler) bool {
	_, ok := h.(*cors)
	return ok
}

// IsPreflight reports a CORS preflight request and the method it
// announces (Fetch standard, "CORS-preflight request").
func IsPreflight(req *exchange.Request) (method string, ok bool) {
	if req.Method != "OPTIONS" {
		return "", false
	}
	m, ok := req.Header.Get("Access-Control-Request-Method")
	if !ok || m == "" {
		return "", false
	}
	if _, ok := req.Header.Get("Origin"); !ok {
		return "", false
	}
	return m, true
}

func (c *cors) allows(origin string) bool {
	if c.anyOrigin {
		return true
	}
	for _, o := range c.origins {
		if exchange.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

func (c *cors) ServeExchange(x *exchange.Exchange) {
	origin, ok := x.Req.Header.Get("Origin")
	if !ok {
		c.next.ServeExchange(x)
		return
	}
	h := x.W.Header()
	// The answer depends on Origin unless every origin gets "*": caches
	// must keep them apart (Fetch standard, "CORS protocol and HTTP caches").
	if !c.anyOrigin || c.credentials {
		h.Add("Vary", "Origin")
	}
	allowed := c.allows(origin)
	if allowed {
		if c.anyOrigin && !c.credentials {
			h.Set("Access-Control-Allow-Origin", "*")
		} else {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		if c.credentials {
			h.Set("Access-Control-Allow-Credentials", "true")
		}
	}
	method, preflight := IsPreflight(&x.Req)
	if !preflight {
		if allowed && c.exposeHdrs != "" {
			h.Set("Access-Control-Expose-Headers", c.exposeHdrs)
		}
		c.next.ServeExchange(x)
		return
	}
	// A preflight is answered here and never forwarded. From an origin not
	// allowed it gets no Access-Control-Allow-* fields, and the browser
	// refuses the request it announced.
	if allowed {
		h.Set("Access-Control-Allow-Methods", method)
		switch {
		case c.allowHdrs != "":
			h.Set("Access-Control-Allow-Headers", c.allowHdrs)
		default:
			h.Add("Vary", "Access-Control-Request-Headers")
			if req, ok := x.Req.Header.Get("Access-Control-Request-Headers"); ok && req != "" {
				h.Set("Access-Control-Allow-Headers", req)
			}
		}
		h.Set("Access-Control-Max-Age", c.maxAge)
	}
	h.Set("Content-Length", "0")
	x.State.Status = 204
	x.W.WriteHeader(204)
}
