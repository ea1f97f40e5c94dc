package probe

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ICMPFacts are an icmp probe's facts.
type ICMPFacts struct {
	// Socket is the kind of socket the echo went through: "ping" (an
	// unprivileged datagram socket, allowed by net.ipv4.ping_group_range)
	// or "raw" (needs CAP_NET_RAW).
	Socket string `json:"socket"`
	// HopLimit is the reply's TTL or hop limit, when the socket reports it.
	HopLimit int `json:"hop_limit,omitempty"`
}

// probeICMP sends one echo request (RFC 792, RFC 4443) to target and waits
// for the reply. It tries an unprivileged ping socket first and a raw one
// second; when the process may open neither, the reason is
// icmp_not_permitted and the error says which setting allows it.
func (p *Prober) probeICMP(ctx context.Context, target string, m *Module, r *Result) error {
	im := &m.ICMP
	ip, err := p.resolve(ctx, trimBrackets(target), im.PreferredIPProtocol, im.IPProtocolFallback, r)
	if err != nil {
		return err
	}
	setup := time.Now()
	conn, socket, err := listenICMP(ip, im.SourceIPAddress)
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, os.ErrPermission) {
			return r.failWith(ReasonICMPNotPermitted, "icmp: this process may open neither a ping socket (sysctl net.ipv4.ping_group_range does not include its group) nor a raw socket (no CAP_NET_RAW): %v", err)
		}
		return r.fail(err, phaseConnect)
	}
	defer conn.Close()
	facts := &ICMPFacts{Socket: socket}
	r.ICMP = facts
	defer bindDeadline(ctx, conn)()
	var typ icmp.Type = ipv4.ICMPTypeEcho
	proto := 1
	if ip.Is6() {
		typ, proto = ipv6.ICMPTypeEchoRequest, 58
	}
	if im.TTL > 0 {
		if ip.Is4() {
			conn.IPv4PacketConn().SetTTL(im.TTL)
		} else {
			conn.IPv6PacketConn().SetHopLimit(im.TTL)
		}
	}
	id, seq := rand.IntN(0xffff), rand.IntN(0xffff)
	payload := make([]byte, max(im.PayloadSize, 8))
	copy(payload, "penstock")
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: payload}}
	wire, err := msg.Marshal(nil)
	if err != nil {
		return r.fail(err, phaseConnect)
	}
	var dst net.Addr = &net.IPAddr{IP: ip.AsSlice()}
	if socket == "ping" {
		dst = &net.UDPAddr{IP: ip.AsSlice()}
	}
	r.Phases.Setup = Seconds(time.Since(setup))
	start := time.Now()
	if _, err := conn.WriteTo(wire, dst); err != nil {
		return r.fail(err, phaseConnect)
	}
	buf := make([]byte, 1500+len(payload))
	// The reply's TTL comes in a control message, where the socket gives
	// one (blackbox's probe_icmp_reply_hop_limit).
	if ip.Is4() {
		conn.IPv4PacketConn().SetControlMessage(ipv4.FlagTTL, true)
	} else {
		conn.IPv6PacketConn().SetControlMessage(ipv6.FlagHopLimit, true)
	}
	for {
		n, hop, from, err := readICMP(conn, ip, buf)
		if err != nil {
			if isTimeout(err) {
				return r.failWith(ReasonICMPNoReply, "icmp: no echo reply from %s before the timeout", ip)
			}
			return r.fail(err, phaseExchange)
		}
		reply, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		echo, ok := reply.Body.(*icmp.Echo)
		if !ok || (reply.Type != ipv4.ICMPTypeEchoReply && reply.Type != ipv6.ICMPTypeEchoReply) {
			continue
		}
		// A ping socket's kernel rewrites the identifier: match on the
		// sequence number and the sender there.
		if echo.Seq != seq || (socket == "raw" && echo.ID != id) || !sameIP(from, ip) {
			continue
		}
		r.Phases.RTT = Seconds(time.Since(start))
		facts.HopLimit = hop
		return nil
	}
}

func listenICMP(ip netip.Addr, source string) (*icmp.PacketConn, string, error) {
	network, raw, local := "udp4", "ip4:icmp", "0.0.0.0"
	if ip.Is6() {
		network, raw, local = "udp6", "ip6:ipv6-icmp", "::"
	}
	if source != "" {
		local = source
	}
	conn, err := icmp.ListenPacket(network, local)
	if err == nil {
		return conn, "ping", nil
	}
	conn, rawErr := icmp.ListenPacket(raw, local)
	if rawErr == nil {
		return conn, "raw", nil
	}
	return nil, "", errors.Join(err, rawErr)
}

func sameIP(a net.Addr, ip netip.Addr) bool {
	switch v := a.(type) {
	case *net.IPAddr:
		x, _ := netip.AddrFromSlice(v.IP)
		return x.Unmap() == ip.Unmap()
	case *net.UDPAddr:
		x, _ := netip.AddrFromSlice(v.IP)
		return x.Unmap() == ip.Unmap()
	}
	return false
}

// readICMP reads one packet and its hop limit (0 when not reported).
func readICMP(conn *icmp.PacketConn, ip netip.Addr, buf []byte) (int, int, net.Addr, error) {
	if ip.Is4() {
		n, cm, from, err := conn.IPv4PacketConn().ReadFrom(buf)
		if cm != nil {
			return n, cm.TTL, from, err
		}
		return n, 0, from, err
	}
	n, cm, from, err := conn.IPv6PacketConn().ReadFrom(buf)
	if cm != nil {
		return n, cm.HopLimit, from, err
	}
	return n, 0, from, err
}
