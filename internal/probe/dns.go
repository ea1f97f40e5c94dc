package probe

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNSFacts are a dns probe's facts.
type DNSFacts struct {
	Rcode      string `json:"rcode"`
	Answer     int    `json:"answer_rrs"`
	Authority  int    `json:"authority_rrs"`
	Additional int    `json:"additional_rrs"`
	// Serial is the SOA serial when the answer holds one.
	Serial uint32 `json:"serial,omitempty"`
	// QuerySucceeded is blackbox's probe_dns_query_succeeded: an answer
	// came back (whatever it said).
	QuerySucceeded bool `json:"query_succeeded"`
}

func dnsType(s string) (uint16, bool) {
	t, ok := dns.StringToType[strings.ToUpper(s)]
	return t, ok
}

func dnsClass(s string) (uint16, bool) {
	c, ok := dns.StringToClass[strings.ToUpper(s)]
	return c, ok
}

func dnsRcode(s string) (int, bool) {
	c, ok := dns.StringToRcode[strings.ToUpper(s)]
	return c, ok
}

// probeDNS asks the server at target (host[:port], port 53 by default) the
// module's question and checks the answer's rcode and sections.
func (p *Prober) probeDNS(ctx context.Context, target string, m *Module, r *Result) error {
	dm := &m.DNS
	host, port, err := splitHostPort(target, "53")
	if err != nil {
		return r.failWith(ReasonOther, "%v", err)
	}
	ip, err := p.resolve(ctx, host, dm.PreferredIPProtocol, dm.IPProtocolFallback, r)
	if err != nil {
		return err
	}
	qtype, _ := dnsType(dm.QueryType)
	qclass := uint16(dns.ClassINET)
	if dm.QueryClass != "" {
		qclass, _ = dnsClass(dm.QueryClass)
	}
	msg := new(dns.Msg)
	msg.Id = dns.Id()
	msg.RecursionDesired = dm.RecursionDesired == nil || *dm.RecursionDesired
	msg.Question = []dns.Question{{Name: dns.Fqdn(dm.QueryName), Qtype: qtype, Qclass: qclass}}

	network := dm.TransportProtocol
	if dm.DNSOverTLS {
		network = "tcp-tls"
	}
	client := &dns.Client{Net: network}
	if dm.DNSOverTLS {
		cfg, err := dm.TLSConfig.clientTLS(host, p.Sessions)
		if err != nil {
			return r.failWith(ReasonOther, "%v", err)
		}
		client.TLSConfig = cfg
	}
	if dl, ok := ctx.Deadline(); ok {
		client.Timeout = time.Until(dl)
	}
	addr := net.JoinHostPort(ip.String(), port)
	start := time.Now()
	conn, err := client.DialContext(ctx, addr)
	r.Phases.Connect = Seconds(time.Since(start))
	if err != nil {
		return r.fail(err, phaseConnect)
	}
	defer conn.Close()
	defer bindDeadline(ctx, conn)()
	start = time.Now()
	resp, _, err := client.ExchangeWithConnContext(ctx, msg, conn)
	r.Phases.Request = Seconds(time.Since(start))
	facts := &DNSFacts{}
	r.DNS = facts
	if err != nil {
		return r.fail(err, phaseExchange)
	}
	facts.QuerySucceeded = true
	facts.Rcode = dns.RcodeToString[resp.Rcode]
	facts.Answer, facts.Authority, facts.Additional = len(resp.Answer), len(resp.Ns), len(resp.Extra)
	for _, rr := range resp.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			facts.Serial = soa.Serial
		}
	}
	valid := dm.ValidRcodes
	if len(valid) == 0 {
		valid = []string{"NOERROR"}
	}
	okRcode := false
	for _, v := range valid {
		if c, _ := dnsRcode(v); c == resp.Rcode {
			okRcode = true
		}
	}
	if !okRcode {
		if resp.Rcode == dns.RcodeNameError {
			return r.failWith(ReasonDNSNXDomain, "rcode %s, want one of %v", facts.Rcode, valid)
		}
		return r.failWith(ReasonDNSRcodeMismatch, "rcode %s, want one of %v", facts.Rcode, valid)
	}
	for _, s := range []struct {
		name string
		v    *RRValidator
		rrs  []dns.RR
	}{{"answer", &dm.ValidateAnswer, resp.Answer}, {"authority", &dm.ValidateAuthority, resp.Ns}, {"additional", &dm.ValidateAdditional, resp.Extra}} {
		if err := s.v.check(s.rrs); err != nil {
			r.FailedDueToRegex = true
			return r.failWith(ReasonDNSAnswerMismatch, "%s section: %v", s.name, err)
		}
	}
	return nil
}

// check applies the validator to records, with blackbox_exporter's meaning
// of each list.
func (v *RRValidator) check(rrs []dns.RR) error {
	texts := make([]string, len(rrs))
	for i, rr := range rrs {
		texts[i] = rr.String()
	}
	return v.checkTexts(texts)
}

func (v *RRValidator) checkTexts(texts []string) error {
	for _, re := range v.FailIfMatchesRegexp {
		for _, t := range texts {
			if re.MatchString(t) {
				return fmt.Errorf("record %q matches %q", t, re)
			}
		}
	}
	for _, re := range v.FailIfAllMatchRegexp {
		all := len(texts) > 0
		for _, t := range texts {
			all = all && re.MatchString(t)
		}
		if all {
			return fmt.Errorf("every record matches %q", re)
		}
	}
	for _, re := range v.FailIfNotMatchesRegexp {
		for _, t := range texts {
			if !re.MatchString(t) {
				return fmt.Errorf("record %q does not match %q", t, re)
			}
		}
	}
	for _, re := range v.FailIfNoneMatchesRegexp {
		any := false
		for _, t := range texts {
			any = any || re.MatchString(t)
		}
		if !any {
			return fmt.Errorf("no record matches %q", re)
		}
	}
	return nil
}
