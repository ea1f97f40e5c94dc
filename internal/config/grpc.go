package config

import "strings"

// GRPCMatch routes gRPC calls by service and method. A gRPC call's path is
// "/package.Service/Method" (PROTOCOL-HTTP2.md), so the match is the path
// pattern "/package.Service/Method", or "/package.Service/*method" for
// every method of the service, with the method POST: writing
// match: {path: "/pkg.Svc/Call", methods: [POST]} routes the same calls.
type GRPCMatch struct {
	// Service is the fully qualified service name, e.g.
	// "inference.GRPCInferenceService". Required.
	Service string `yaml:"service"`
	// Method is the method name, e.g. "ModelInfer"; empty matches every
	// method of the service. Default empty.
	Method string `yaml:"method"`
}

// Path returns the path pattern the match stands for.
func (g *GRPCMatch) Path() string {
	if g.Method == "" {
		return "/" + g.Service + "/*method"
	}
	return "/" + g.Service + "/" + g.Method
}

// setGRPCDefaults turns a grpc match into the path and method it stands
// for, so that the router and everything after it see an ordinary route.
func (m *Match) setGRPCDefaults() {
	if m.GRPC == nil {
		return
	}
	if m.Path == "" && m.PathPrefix == "" {
		m.Path = m.GRPC.Path()
	}
	if len(m.Methods) == 0 {
		m.Methods = []string{"POST"}
	}
}

// checkGRPC validates a route's grpc match at path p (routes[i]).
func (m *Match) checkGRPC(col *Collector, p string) {
	g := m.GRPC
	if g == nil {
		return
	}
	gp := p + ".match.grpc"
	switch {
	case g.Service == "":
		col.Addf(gp+".service", "is required")
	case !grpcName(g.Service, true):
		col.Addf(gp+".service", "%q is not a service name: dot-separated identifiers, e.g. \"pkg.Service\"", g.Service)
	}
	if g.Method != "" && !grpcName(g.Method, false) {
		col.Addf(gp+".method", "%q is not a method name: an identifier, e.g. \"Predict\"", g.Method)
	}
	if m.PathPrefix != "" || m.Path != "" && m.Path != g.Path() {
		col.Addf(gp, "stands for the path %q: remove path and path_prefix", g.Path())
	}
	if len(m.Methods) > 0 && (len(m.Methods) != 1 || m.Methods[0] != "POST") {
		col.Addf(p+".match.methods", "a grpc match takes POST only (every gRPC call is a POST)")
	}
}

// grpcName reports an identifier ([A-Za-z_][A-Za-z0-9_]*), or with dotted
// a dot-separated list of them (a protobuf full name).
func grpcName(s string, dotted bool) bool {
	parts := []string{s}
	if dotted {
		parts = strings.Split(s, ".")
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			switch {
			case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			case '0' <= c && c <= '9' && i > 0:
			default:
				return false
			}
		}
	}
	return true
}
