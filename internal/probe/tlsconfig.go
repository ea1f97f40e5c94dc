package probe

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
)

var tlsVersions = map[string]uint16{
	"TLS10": tls.VersionTLS10, "TLS11": tls.VersionTLS11, "TLS12": tls.VersionTLS12, "TLS13": tls.VersionTLS13,
}

// groups are the key exchange groups a module may name, by crypto/tls's
// spelling of them.
var groups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}

func curveByName(name string) (tls.CurveID, bool) {
	for _, g := range groups {
		if strings.EqualFold(g.String(), name) {
			return g, true
		}
	}
	return 0, false
}

// clientTLS returns the client configuration of c for serverName (used
// when c names none). Session tickets are kept in cache (nil: none), so
// that probes of one destination resume. The files c names were read when
// the modules loaded (compile); a probe only copies the result.
func (c *TLSConfig) clientTLS(serverName string, cache tls.ClientSessionCache) (*tls.Config, error) {
	base := c.compiled
	if base == nil {
		var err error
		if base, err = c.compile(); err != nil {
			return nil, fmt.Errorf("tls_config.%w", err)
		}
	}
	cfg := base.Clone()
	cfg.ServerName = serverName
	cfg.ClientSessionCache = cache
	if c.ServerName != "" {
		cfg.ServerName = c.ServerName
	}
	return cfg, nil
}

// compile builds the configuration's fixed part, reading its files.
func (c *TLSConfig) compile() (*tls.Config, error) {
	cfg := &tls.Config{InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if v, ok := tlsVersions[c.MinVersion]; ok {
		cfg.MinVersion = v
	}
	if v, ok := tlsVersions[c.MaxVersion]; ok {
		cfg.MaxVersion = v
	}
	cfg.NextProtos = c.ALPN
	for _, name := range c.CurvePreferences {
		g, _ := curveByName(name)
		cfg.CurvePreferences = append(cfg.CurvePreferences, g)
	}
	return cfg, nil
}

// parseBytes reads a size such as 10MB, 512KiB or 1048576.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("not a size: %q (want e.g. 1MB, 512KiB)", s)
	}
	return n * mult, nil
}
