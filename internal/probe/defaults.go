package probe

// DefaultModulesYAML are the modules used when no modules file is given:
// blackbox_exporter's usual names, so that a scrape config written for it
// works unchanged.
const DefaultModulesYAML = `modules:
  http_2xx:
    prober: http
  http_post_2xx:
    prober: http
    http: {method: POST}
  http3_2xx:
    prober: http
    http: {enable_http3: true}
  tcp_connect:
    prober: tcp
  tls_connect:
    prober: tls
    tcp:
      tls_config: {alpn: [h2, http/1.1]}
  dns_udp:
    prober: dns
    dns: {query_name: localhost, query_type: A}
  icmp:
    prober: icmp
  grpc_plain:
    prober: grpc
`

// DefaultModules returns the built-in modules.
func DefaultModules() *Modules {
	m, err := LoadModules([]byte(DefaultModulesYAML), "built-in modules")
	if err != nil {
		panic(err) // a constant that does not load is a bug caught by the tests
	}
	return m
}

// GuessModule picks a built-in module for a bare target: http_2xx for a
// URL, tcp_connect otherwise.
func GuessModule(target string) string {
	if len(target) > 7 && (target[:7] == "http://" || (len(target) > 8 && target[:8] == "https://")) {
		return "http_2xx"
	}
	return "tcp_connect"
}
