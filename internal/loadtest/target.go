package loadtest

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// origin is one scheme://host:port of the targets: connections are per origin.
type origin struct {
	addr string      // host:port to dial
	tls  *tls.Config // nil for cleartext
}

// target is one URL with everything a request to it needs, built once.
type target struct {
	url    *url.URL
	origin int
	method string
	header http.Header // for HTTP/2 and HTTP/3
	body   []byte
	head   bool   // a HEAD request: the response has no body
	h1req  []byte // the whole HTTP/1.1 request, bytes on the wire
}

// buildTargets parses the URLs and prebuilds their requests.
func buildTargets(o *Options, tlsBase *tls.Config) ([]*target, []*origin, error) {
	var targets []*target
	var origins []*origin
	index := map[string]int{}
	for _, raw := range o.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("target %q: %w", raw, err)
		}
		if u.Host == "" {
			return nil, nil, fmt.Errorf("target %q: no host", raw)
		}
		secure := false
		switch u.Scheme {
		case "http":
		case "https":
			secure = true
		default:
			return nil, nil, fmt.Errorf("target %q: scheme must be http or https", raw)
		}
		switch {
		case o.Proto == ProtoH2 && !secure, o.Proto == ProtoH3 && !secure:
			return nil, nil, fmt.Errorf("target %q: --proto %s needs an https URL", raw, o.Proto)
		case o.Proto == ProtoH2C && secure:
			return nil, nil, fmt.Errorf("target %q: --proto h2c needs an http URL", raw)
		}
		port := u.Port()
		if port == "" {
			port = "80"
			if secure {
				port = "443"
			}
		}
		addr := net.JoinHostPort(u.Hostname(), port)
		key := u.Scheme + "://" + addr
		oi, ok := index[key]
		if !ok {
			og := &origin{addr: addr}
			if secure {
				c := tlsBase.Clone()
				c.ServerName = u.Hostname()
				og.tls = c
			}
			oi = len(origins)
			index[key] = oi
			origins = append(origins, og)
		}
		t := &target{url: u, origin: oi, method: o.Method, header: o.Header.Clone(), body: o.Body, head: o.Method == http.MethodHead}
		if t.header == nil {
			t.header = http.Header{}
		}
		if t.header.Get("User-Agent") == "" {
			t.header.Set("User-Agent", "penstock-bench/"+o.Version)
		}
		t.h1req = h1Request(t)
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return nil, nil, fmt.Errorf("no target URL")
	}
	return targets, origins, nil
}

// h1Request renders the request once; every send writes the same bytes.
func h1Request(t *target) []byte {
	var b strings.Builder
	path := t.url.RequestURI()
	b.WriteString(t.method + " " + path + " HTTP/1.1\r\n")
	host := t.url.Host
	if h := t.header.Get("Host"); h != "" {
		host = h
	}
	b.WriteString("Host: " + host + "\r\n")
	for k, vs := range t.header {
		if strings.EqualFold(k, "Host") || strings.EqualFold(k, "Content-Length") {
			continue
		}
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	if len(t.body) > 0 || t.method == http.MethodPost || t.method == http.MethodPut || t.method == http.MethodPatch {
		b.WriteString("Content-Length: " + strconv.Itoa(len(t.body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(t.body)
	return []byte(b.String())
}
