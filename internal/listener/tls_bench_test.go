package listener_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/testpki"
)

// BenchmarkCertificateChoice measures picking the certificate for a client
// hello among n certificates, the client asking for the last one: through
// NewTLS's SNI index, and through crypto/tls's own choice from
// Config.Certificates (a scan calling SupportsCertificate on each) as the
// baseline, measured as the server half of a TLS 1.3 handshake.
func BenchmarkCertificateChoice(b *testing.B) {
	ca := testpki.NewCA(b, "bench CA")
	for _, n := range []int{1, 50} {
		dir := b.TempDir()
		var certs []config.Certificate
		var pairs []tls.Certificate
		for i := range n {
			c := ca.Server(b, fmt.Sprintf("host%d.test", i))
			cf, kf := c.Write(b, dir, fmt.Sprint(i))
			certs = append(certs, config.Certificate{CertFile: cf, KeyFile: kf})
			pairs = append(pairs, c.Pair)
		}
		lt, err := listener.NewTLS(&config.Listener{Name: "b", Address: "127.0.0.1:0", Protocols: []string{"h1"},
			TLS: &config.ListenerTLS{Certificates: certs}}, listener.TLSOptions{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		sni := fmt.Sprintf("host%d.test", n-1)
		for _, c := range []struct {
			name string
			conf *tls.Config
		}{
			{"crypto-tls-scan", &tls.Config{Certificates: pairs}},
			{"sni-index", lt.Config()},
		} {
			b.Run(fmt.Sprintf("%s/%d-certs", c.name, n), func(b *testing.B) {
				client := &tls.Config{ServerName: sni, RootCAs: ca.Pool()}
				for b.Loop() {
					cc, sc := net.Pipe()
					done := make(chan error, 1)
					go func() { done <- tls.Client(cc, client).Handshake() }()
					if err := tls.Server(sc, c.conf).Handshake(); err != nil {
						b.Fatal(err)
					}
					if err := <-done; err != nil {
						b.Fatal(err)
					}
					cc.Close()
					sc.Close()
				}
			})
		}
	}
}
