package front

import (
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// AltSvc is a listener's precomputed Alt-Svc advertisement (RFC 7838) of
// its HTTP/3 endpoint, added to HTTP/1.1 and HTTP/2 responses.
type AltSvc struct {
	value   string
	exclude []string
}

// NewAltSvc returns lc's advertisement, or nil when lc serves no HTTP/3 or
// advertises none. bound is the TCP listener's address, whose port the UDP
// socket shares.
func NewAltSvc(lc *config.Listener, bound net.Addr) *AltSvc {
	if lc.TLS == nil || !slices.Contains(lc.Protocols, config.ProtocolH3) || (lc.HTTP3.AltSvc != nil && !*lc.HTTP3.AltSvc) {
		return nil
	}
	port := lc.HTTP3.AltSvcPort
	if port == 0 {
		if ta, ok := bound.(*net.TCPAddr); ok {
			port = ta.Port
		}
	}
	maxAge := int64(lc.HTTP3.AltSvcMaxAge.D().Seconds())
	if lc.HTTP3.AltSvcMaxAge == 0 {
		maxAge = int64(config.DefaultAltSvcMaxAge.D().Seconds())
	}
	return &AltSvc{
		value:   `h3=":` + strconv.Itoa(port) + `"; ma=` + strconv.FormatInt(maxAge, 10),
		exclude: lc.HTTP3.AltSvcExcludeHosts,
	}
}

// add sets the Alt-Svc header on x's response unless x already speaks
// HTTP/3 or its host is excluded. It allocates nothing.
func (a *AltSvc) add(x *exchange.Exchange) {
	if x.Req.Proto >= exchange.HTTP3 {
		return
	}
	if len(a.exclude) > 0 {
		host := x.Req.Host
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
			host = host[:i]
		}
		for _, e := range a.exclude {
			if exchange.EqualFold(host, e) {
				return
			}
		}
	}
	x.W.Header().Set("Alt-Svc", a.value)
}
