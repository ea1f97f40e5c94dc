package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/penstock-dev/penstock/internal/ticketkeys"
)

// Validate checks c as a whole and reports every problem at once as Errors,
// each naming the field path and, when c was decoded by Parse or Load, the
// file and line. It returns nil when c is usable. Validate expects defaults
// to have been applied (Parse and Load do; otherwise call SetDefaults).
//
// Validate reads the certificate, key and CA files the config names, to fail
// at check time rather than at start. Relative paths are relative to the
// working directory.
//
// Path pattern syntax and conflicts between routes are not checked here: the
// router owns that grammar and reports it when routes are compiled, through
// Errorf or a Collector so the errors look the same. Neither are a route's
// stage fields (Route.Stages): their stages check them.
func (c *Config) Validate() error {
	col := NewCollector(c)
	binds := c.validateListeners(col)
	upstreams := c.validateUpstreams(col)
	c.validateFunctions(col, upstreams)
	c.validateRoutes(col, upstreams)
	c.validateAdmin(col, binds)
	c.validateTelemetry(col)
	c.validateLimits(col)
	c.validatePostgres(col)
	checkDuration(col, "reload.debounce", c.Reload.Debounce)
	checkDuration(col, "reload.stream_grace", c.Reload.StreamGrace)

	if !isKnown(c.Logging.Level, LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError) {
		col.Addf("logging.level", "unknown level %q; want debug, info, warn or error", c.Logging.Level)
	}
	if !isKnown(c.Logging.Format, LogFormatJSON, LogFormatText) {
		col.Addf("logging.format", "unknown format %q; want json or text", c.Logging.Format)
	}
	checkDuration(col, "shutdown.drain_timeout", c.Shutdown.DrainTimeout)
	checkDuration(col, "shutdown.idle_grace", c.Shutdown.IdleGrace)
	return col.Err()
}

// bound is a listener's parsed address, kept to detect two sockets that
// cannot both bind.
type bound struct {
	path string
	host string
	port uint64
}

// validateListeners checks the listeners and returns their valid addresses.
func (c *Config) validateListeners(col *Collector) []bound {
	if len(c.Listeners) == 0 {
		col.Addf("listeners", "at least one listener is required")
	}
	names := map[string]string{}
	var binds []bound
	for i, l := range c.Listeners {
		p := indexPath("listeners", i)
		checkName(col, p, "listener", l.Name, names)

		if host, port, ok := checkBindAddress(col, p+".address", l.Address); ok {
			b := bound{path: p, host: host, port: port}
			for _, other := range binds {
				if bindConflict(b, other) {
					col.Addf(p+".address", "address %q conflicts with %s's address", l.Address, other.path)
					break
				}
			}
			binds = append(binds, b)
		}

		checkListenerProtocols(col, p+".protocols", l.Protocols, l.TLS != nil)
		switch l.Engine {
		case EngineNative, EngineStdHTTP, "":
		default:
			col.Addf(p+".engine", "unknown engine %q; want %q or %q", l.Engine, EngineNative, EngineStdHTTP)
		}
		if l.TLS != nil {
			checkListenerTLS(col, p+".tls", l.TLS)
		}

		checkListenerHTTP3(col, p+".http3", &l.HTTP3)
		checkDuration(col, p+".limits.read_header_timeout", l.Limits.ReadHeaderTimeout)
		checkDuration(col, p+".limits.idle_timeout", l.Limits.IdleTimeout)
		checkSize(col, p+".limits.max_header_bytes", l.Limits.MaxHeaderBytes)
		if w := l.Limits.HTTP2MaxReceiveWindow; w != 0 && (w < 65535 || w > 1<<31-1) {
			col.Addf(p+".limits.http2_max_receive_window", "must be between 65535 bytes and 2GiB-1 (HTTP/2's window bounds), got %d", w)
		}

		for j, tp := range l.TrustedProxies {
			if _, err := netip.ParsePrefix(tp); err == nil {
				continue
			}
			if _, err := netip.ParseAddr(tp); err == nil {
				continue
			}
			col.Addf(indexPath(p+".trusted_proxies", j), "invalid trusted proxy %q: want a CIDR such as \"10.0.0.0/8\" or an IP address", tp)
		}
	}
	return binds
}

func checkListenerProtocols(col *Collector, path string, protos []string, isTLS bool) {
	seen := map[string]bool{}
	for i, proto := range protos {
		p := indexPath(path, i)
		switch {
		case seen[proto]:
			col.Addf(p, "protocol %q is listed twice", proto)
		case proto == ProtocolH1:
		case proto == ProtocolH2 && isTLS, proto == ProtocolH2C && !isTLS, proto == ProtocolH3 && isTLS:
		case proto == ProtocolH3:
			col.Addf(p, "protocol \"h3\" (HTTP/3 over QUIC) needs TLS: add a tls block")
		case proto == ProtocolH2:
			col.Addf(p, "protocol \"h2\" needs TLS: add a tls block, or use \"h2c\" for HTTP/2 over cleartext")
		case proto == ProtocolH2C:
			col.Addf(p, "protocol \"h2c\" is HTTP/2 over cleartext and cannot be used with TLS: use \"h2\"")
		case isTLS:
			col.Addf(p, "unknown protocol %q; a TLS listener speaks h1, h2 and h3", proto)
		default:
			col.Addf(p, "unknown protocol %q; a plain listener speaks h1 and h2c", proto)
		}
		seen[proto] = true
	}
}

func checkListenerHTTP3(col *Collector, path string, h *ListenerHTTP3) {
	checkDuration(col, path+".alt_svc_max_age", h.AltSvcMaxAge)
	checkDuration(col, path+".max_idle_timeout", h.MaxIdleTimeout)
	if h.AltSvcPort < 0 || h.AltSvcPort > 65535 {
		col.Addf(path+".alt_svc_port", "port %d is out of range 1-65535", h.AltSvcPort)
	}
	if h.MaxIncomingStreams < 0 {
		col.Addf(path+".max_incoming_streams", "must be at least 1")
	}
	if h.HandshakeRateLimit < 0 {
		col.Addf(path+".handshake_rate_limit", "must be 0 (off) or a positive rate per second")
	}
	for i, host := range h.AltSvcExcludeHosts {
		if host == "" || strings.ContainsAny(host, "/ :") {
			col.Addf(indexPath(path+".alt_svc_exclude_hosts", i), "%q is not a host name", host)
		}
	}
}

func checkListenerTLS(col *Collector, path string, t *ListenerTLS) {
	switch {
	case !t.SelfSigned && len(t.Certificates) == 0:
		col.Addf(path, "needs certificates or self_signed: true")
	case t.SelfSigned && len(t.Certificates) > 0:
		col.Addf(path+".self_signed", "self_signed and certificates cannot both be set")
	}
	for i, cert := range t.Certificates {
		p := indexPath(path+".certificates", i)
		certOK := checkFile(col, p+".cert_file", "certificate file", cert.CertFile)
		keyOK := checkFile(col, p+".key_file", "key file", cert.KeyFile)
		if certOK && keyOK {
			if _, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile); err != nil {
				col.Addf(p+".cert_file", "certificate %q with key %q does not load: %v", cert.CertFile, cert.KeyFile, err)
			}
		}
	}
	if !isKnown(t.MinVersion, TLSVersion12, TLSVersion13) {
		col.Addf(path+".min_version", "unknown TLS version %q; want \"1.2\" or \"1.3\"", t.MinVersion)
	}
	if ca := t.ClientAuth; ca != nil {
		checkClientAuth(col, path+".client_auth", ca)
	}
	if f := t.SessionTicketKeysFile; f != "" && checkFile(col, path+".session_ticket_keys_file", "session ticket key file", f) {
		if b, err := os.ReadFile(f); err == nil {
			if _, err := ticketkeys.Parse(b); err != nil {
				col.Addf(path+".session_ticket_keys_file", "session ticket key file %q does not load: %v", f, err)
			}
		}
	}
}

func checkClientAuth(col *Collector, path string, ca *ClientAuth) {
	switch {
	case !isKnown(ca.Mode, ClientAuthNone, ClientAuthVerifyIfGiven, ClientAuthRequire):
		col.Addf(path+".mode", "unknown mode %q; want \"none\", \"verify_if_given\" or \"require\"", ca.Mode)
		return
	case ca.Mode == ClientAuthNone && len(ca.CAFiles) > 0:
		col.Addf(path+".ca_files", "has no effect with mode \"none\"; set mode to \"require\" or \"verify_if_given\"")
		return
	case ca.Mode != ClientAuthNone && len(ca.CAFiles) == 0:
		col.Addf(path+".ca_files", "is required with mode %q: name the CAs that sign client certificates", ca.Mode)
		return
	}
	for i, f := range ca.CAFiles {
		p := indexPath(path+".ca_files", i)
		if checkFile(col, p, "CA file", f) {
			if b, err := os.ReadFile(f); err == nil && !x509.NewCertPool().AppendCertsFromPEM(b) {
				col.Addf(p, "CA file %q holds no PEM certificates", f)
			}
		}
	}
}

// validateUpstreams checks the upstreams and returns their names, for routes
// to refer to.
func (c *Config) validateUpstreams(col *Collector) map[string]string {
	names := map[string]string{}
	for i, u := range c.Upstreams {
		p := indexPath("upstreams", i)
		checkName(col, p, "upstream", u.Name, names)

		if len(u.Endpoints) == 0 {
			col.Addf(p+".endpoints", "at least one endpoint is required")
		}
		addrs := map[string]int{}
		for j, e := range u.Endpoints {
			ep := indexPath(p+".endpoints", j)
			if checkEndpointAddress(col, ep+".address", e.Address) {
				if first, dup := addrs[e.Address]; dup {
					col.Addf(ep+".address", "endpoint %q is listed twice (first as endpoints[%d])", e.Address, first)
				} else {
					addrs[e.Address] = j
				}
			}
			if e.Weight < 1 || e.Weight > MaxWeight {
				col.Addf(ep+".weight", "weight %d is out of range: want 1 to %d", e.Weight, MaxWeight)
			}
		}

		if !isKnown(u.Balancing, BalancingRoundRobin, BalancingWeightedRoundRobin, BalancingLeastRequest) {
			col.Addf(p+".balancing", "unknown balancing %q; want round_robin, weighted_round_robin or least_request", u.Balancing)
		}
		switch u.Protocol {
		case ProtocolH1:
		case ProtocolH2:
			if u.TLS == nil {
				col.Addf(p+".protocol", "protocol \"h2\" needs a tls block; use \"h2c\" for HTTP/2 over cleartext")
			}
		case ProtocolH2C:
			if u.TLS != nil {
				col.Addf(p+".protocol", "protocol \"h2c\" is HTTP/2 over cleartext and cannot be used with tls; use \"h2\"")
			}
		case ProtocolH3:
			if u.TLS == nil {
				col.Addf(p+".protocol", "protocol \"h3\" (HTTP/3 over QUIC) needs a tls block")
			}
			for j, e := range u.Endpoints {
				if strings.HasPrefix(e.Address, "unix:") {
					col.Addf(indexPath(p+".endpoints", j)+".address", "protocol \"h3\" runs over UDP and cannot reach a unix socket")
				}
			}
		default:
			col.Addf(p+".protocol", "unknown protocol %q; want h1, h2c, h2 or h3", u.Protocol)
		}
		if !isKnown(u.Client, ClientNative, ClientStdHTTP) {
			col.Addf(p+".client", "unknown client %q; want native or stdhttp", u.Client)
		}
		if u.TLS != nil && u.TLS.CAFile != "" && checkFile(col, p+".tls.ca_file", "CA file", u.TLS.CAFile) {
			// checkFile has just read it; a second read keeps the checks
			// independent and the file is small.
			if pem, err := os.ReadFile(u.TLS.CAFile); err == nil && !x509.NewCertPool().AppendCertsFromPEM(pem) {
				col.Addf(p+".tls.ca_file", "CA file %q holds no PEM certificates", u.TLS.CAFile)
			}
		}

		if u.Pool.MaxIdlePerEndpoint < 0 {
			col.Addf(p+".pool.max_idle_per_endpoint", "must not be negative, got %d", u.Pool.MaxIdlePerEndpoint)
		}
		if u.Pool.MaxPerEndpoint < 0 {
			col.Addf(p+".pool.max_per_endpoint", "must not be negative, got %d", u.Pool.MaxPerEndpoint)
		}
		checkDuration(col, p+".pool.idle_timeout", u.Pool.IdleTimeout)
		if u.PassiveHealth.MaxFails < 0 {
			col.Addf(p+".passive_health.max_fails", "must be at least 1, got %d", u.PassiveHealth.MaxFails)
		}
		checkDuration(col, p+".passive_health.fail_timeout", u.PassiveHealth.FailTimeout)
		checkDuration(col, p+".passive_health.trial_interval", u.PassiveHealth.TrialInterval)
		u.validateProtection(col, p)
	}
	return names
}

func (c *Config) validateRoutes(col *Collector, upstreams map[string]string) {
	names := map[string]string{}
	for i, r := range c.Routes {
		p := indexPath("routes", i)
		checkName(col, p, "route", r.Name, names)

		switch _, known := upstreams[r.Upstream]; {
		case r.Upstream == "":
			col.Addf(p+".upstream", "is required")
		case !known:
			col.Addf(p+".upstream", "unknown upstream %q%s", r.Upstream, didYouMean(r.Upstream, slices.Sorted(maps.Keys(upstreams))))
		}

		m := r.Match
		m.checkGRPC(col, p)
		switch {
		case m.Path == "" && m.PathPrefix == "" && m.GRPC == nil:
			col.Addf(p+".match", "needs path, path_prefix or grpc")
		case m.Path != "" && m.PathPrefix != "":
			col.Addf(p+".match.path_prefix", "path and path_prefix cannot both be set")
		}

		methods := map[string]bool{}
		for j, method := range m.Methods {
			mp := indexPath(p+".match.methods", j)
			switch {
			case !isToken(method):
				col.Addf(mp, "invalid method %q", method)
			case method != strings.ToUpper(method):
				col.Addf(mp, "method %q must be uppercase: %q", method, strings.ToUpper(method))
			case methods[method]:
				col.Addf(mp, "method %q is listed twice", method)
			}
			methods[method] = true
		}

		headers := map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
			hp := keyPath(p+".match.headers", name)
			canon := strings.ToLower(name)
			switch first, dup := headers[canon]; {
			case !isToken(name):
				col.Addf(hp, "invalid header name %q", name)
			case dup:
				col.Addf(hp, "header %q is listed twice (as %q too; names are case-insensitive)", name, first)
			default:
				headers[canon] = name
			}
		}

		checkDuration(col, p+".timeouts.connect", r.Timeouts.Connect)
		checkDuration(col, p+".timeouts.response_header", r.Timeouts.ResponseHeader)
		checkDuration(col, p+".timeouts.request", r.Timeouts.Request)
		r.Retry.validate(col, p+".retry")
		if r.Split != nil {
			r.Split.validate(col, p+".split", r.Upstream, upstreams)
		}
		for j, u := range r.TunnelledUpgrades() {
			if !strings.EqualFold(u, UpgradeWebSocket) {
				col.Addf(indexPath(p+".upgrades", j), "cannot tunnel %q: only websocket is (an upgrade to anything else goes upstream as a plain request)", u)
			}
		}
		if r.Batch != nil {
			r.Batch.validate(col, p+".batch")
		}
	}
}

// TunnelledUpgrades returns the protocols r tunnels (Upgrades, defaults
// applied).
func (r *Route) TunnelledUpgrades() []string {
	if r.Upgrades == nil {
		return []string{UpgradeWebSocket}
	}
	return *r.Upgrades
}

// UpgradeWebSocket is the one protocol Route.Upgrades can list.
const UpgradeWebSocket = "websocket"

// validateAdmin checks the admin block; binds are the valid listener
// addresses, which the admin listener must not collide with.
func (c *Config) validateAdmin(col *Collector, binds []bound) {
	if c.Admin == nil {
		return
	}
	host, port, ok := checkBindAddress(col, "admin.address", c.Admin.Address)
	if !ok {
		return
	}
	admin := bound{path: "admin", host: host, port: port}
	for _, b := range binds {
		if bindConflict(admin, b) {
			col.Addf("admin.address", "address %q conflicts with %s's address", c.Admin.Address, b.path)
			return
		}
	}
	set := 0
	for _, v := range []string{c.Admin.Token, c.Admin.TokenFile, c.Admin.TokenEnv} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		col.Addf("admin", "set at most one of token, token_file and token_env")
	}
	if _, err := c.Admin.ResolveToken(); err != nil {
		field := "admin.token_file"
		if c.Admin.TokenEnv != "" {
			field = "admin.token_env"
		}
		col.Addf(field, "%v", err)
	} else if set == 0 && !isLoopbackHost(host) {
		col.Addf("admin.address", "admin API on non-loopback address %q needs a token (token_file or token_env); "+
			"without one anyone who can reach it could reload the configuration", c.Admin.Address)
	}
}

// isLoopbackHost reports whether a bind host is a loopback name or address.
// An empty host or an unspecified address binds every interface: not loopback.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// checkName reports a missing name, or a name already in names (which maps
// names to the path of the block that has it), and records name.
func checkName(col *Collector, path, kind, name string, names map[string]string) {
	if name == "" {
		col.Addf(path+".name", "is required")
		return
	}
	if first, dup := names[name]; dup {
		col.Addf(path+".name", "duplicate %s name %q (first used by %s)", kind, name, first)
		return
	}
	names[name] = path
}

// checkBindAddress checks an address penstock listens on: host:port with a
// numeric port (0 picks a free one) and an empty host meaning every
// interface. It returns the parts when the address is valid.
func checkBindAddress(col *Collector, path, addr string) (string, uint64, bool) {
	if addr == "" {
		col.Addf(path, "is required")
		return "", 0, false
	}
	if strings.HasPrefix(addr, "unix:") {
		col.Addf(path, "unix sockets are not supported here; use host:port such as \"127.0.0.1:8080\"")
		return "", 0, false
	}
	host, port, err := splitBindAddress(addr)
	if err != nil {
		col.Addf(path, "invalid address %q: %v", addr, err)
		return "", 0, false
	}
	return host, port, true
}

func splitBindAddress(addr string) (string, uint64, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, errors.New("want host:port such as \"127.0.0.1:8080\" or \":443\"")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host != "" && !isHost(host) {
		return "", 0, fmt.Errorf("host %q is not an IP address or a DNS name", host)
	}
	return host, n, nil
}

// bindConflict reports whether two listening sockets would fight over the
// same port. Port 0 never conflicts: each gets its own free port. An empty
// host or "::" binds every address of both families, "0.0.0.0" every IPv4
// address.
func bindConflict(a, b bound) bool {
	if a.port != b.port || a.port == 0 {
		return false
	}
	ha, hb := normalizeHost(a.host), normalizeHost(b.host)
	switch {
	case ha == hb, ha == "" || ha == "::", hb == "" || hb == "::":
		return true
	case ha == "0.0.0.0":
		return !strings.Contains(hb, ":")
	case hb == "0.0.0.0":
		return !strings.Contains(ha, ":")
	}
	return false
}

func normalizeHost(h string) string {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return strings.ToLower(h)
}

// checkEndpointAddress checks an upstream endpoint: "unix:/abs/path" or
// host:port with a host and a port from 1 to 65535.
func checkEndpointAddress(col *Collector, path, addr string) bool {
	const want = `want "host:port" or "unix:/path/to.sock"`
	if addr == "" {
		col.Addf(path, "is required")
		return false
	}
	if sock, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !strings.HasPrefix(sock, "/") {
			col.Addf(path, "invalid endpoint address %q: the socket path must be absolute, e.g. \"unix:/run/app.sock\"", addr)
			return false
		}
		return true
	}
	if strings.Contains(addr, "://") {
		col.Addf(path, "invalid endpoint address %q: write host:port without a scheme", addr)
		return false
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		col.Addf(path, "invalid endpoint address %q: %s", addr, want)
		return false
	}
	if host == "" {
		col.Addf(path, "invalid endpoint address %q: the host is missing", addr)
		return false
	}
	if !isHost(host) {
		col.Addf(path, "invalid endpoint address %q: host %q is not an IP address or a DNS name", addr, host)
		return false
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		col.Addf(path, "invalid endpoint address %q: port %q is not a number from 1 to 65535", addr, port)
		return false
	}
	return true
}

// isHost reports whether h is an IP address (with an optional IPv6 zone) or
// a plausible DNS name. Names are resolved later, at dial time.
func isHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			// "_" appears in real internal names (service records, some
			// container hosts), so it is accepted though not in RFC 1123.
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// checkFile reports a path that is empty, missing or unreadable. what names
// the file in messages ("certificate file").
func checkFile(col *Collector, path, what, name string) bool {
	if name == "" {
		col.Addf(path, "is required")
		return false
	}
	// Stat before opening: opening a FIFO would block, and reading a device
	// such as /dev/zero would never end.
	info, err := os.Stat(name)
	if err == nil && !info.Mode().IsRegular() {
		col.Addf(path, "%s %q is not a regular file", what, name)
		return false
	}
	if err == nil {
		var f *os.File
		if f, err = os.Open(name); err == nil {
			f.Close()
			return true
		}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		col.Addf(path, "missing %s %q", what, name)
	} else {
		col.Addf(path, "cannot read %s %q: %v", what, name, err)
	}
	return false
}

func checkDuration(col *Collector, path string, d Duration) {
	if d < 0 {
		col.Addf(path, "must not be negative, got %s", d)
	}
}

func checkSize(col *Collector, path string, s ByteSize) {
	if s < 0 {
		col.Addf(path, "must not be negative, got %d", s)
	}
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2), the
// syntax of method and header names.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// isKnown reports whether v is one of the allowed values.
func isKnown(v string, allowed ...string) bool { return slices.Contains(allowed, v) }
