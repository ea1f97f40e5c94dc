package probe

import (
	"crypto/tls"

	"google.golang.org/grpc/credentials"
)

func credentialsFor(cert tls.Certificate) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})
}
