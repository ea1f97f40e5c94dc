package listener

import (
	"crypto/tls"
	"strings"
)

// certSet is an immutable set of server certificates and the index that
// picks one by SNI. A reload builds a new set; handshakes read whichever set
// is current.
type certSet struct {
	certs []*tls.Certificate
	// byName maps a lower-case DNS name from a certificate ("api.example.com",
	// or "*.example.com" for a wildcard) to the certificates carrying it, in
	// configuration order.
	byName map[string][]int
}

func newCertSet(certs []*tls.Certificate) *certSet {
	s := &certSet{certs: certs, byName: make(map[string][]int)}
	for i, c := range certs {
		if c.Leaf == nil {
			continue
		}
		names := c.Leaf.DNSNames
		if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
			// A certificate without DNS SANs: its common name is the only
			// name it has. Clients that verify ignore it (RFC 6125 §6.4.4),
			// but serving it for that name is the least surprising choice.
			names = []string{c.Leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if len(s.byName[n]) == 0 || s.byName[n][len(s.byName[n])-1] != i {
				s.byName[n] = append(s.byName[n], i)
			}
		}
	}
	return s
}

// get picks the certificate for a client hello: among the certificates
// whose names match the server name exactly, then those whose wildcard
// matches it (one label, RFC 6125 §6.4.3), the first the client can use
// (key type and signature algorithms); the first match if it can use none;
// the first certificate when nothing matches or the client sent no name.
func (s *certSet) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(s.certs) == 0 {
		return nil, errNoCertificates
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c := s.pick(s.byName[name], hello); c != nil {
			return c, nil
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if c := s.pick(s.byName["*"+name[i:]], hello); c != nil {
				return c, nil
			}
		}
	}
	return s.certs[0], nil
}

func (s *certSet) pick(idx []int, hello *tls.ClientHelloInfo) *tls.Certificate {
	if len(idx) == 0 {
		return nil
	}
	if len(idx) > 1 {
		for _, i := range idx {
			if hello.SupportsCertificate(s.certs[i]) == nil {
				return s.certs[i]
			}
		}
	}
	return s.certs[idx[0]]
}
