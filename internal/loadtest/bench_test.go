package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/url"
	"testing"
	"time"
)

// cannedServer answers every HTTP/1.1 request on a loopback connection with
// the same small response, as fast as it can: the benchmarks below measure
// the client, not a server.
func cannedServer(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					// Requests have no body: read up to the empty line.
					for {
						l, err := r.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(bytes.TrimSpace(l)) == 0 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// One HTTP/1.1 round trip on a kept-alive connection, as a worker does it.
func BenchmarkH1RoundTrip(b *testing.B) {
	addr := cannedServer(b)
	u, _ := url.Parse("http://" + addr + "/")
	tg := &target{url: u, method: "GET"}
	tg.header = map[string][]string{"User-Agent": {"bench"}}
	tg.h1req = h1Request(tg)
	var ct connTimes
	s, err := h1Dialer{}.dial(context.Background(), &origin{addr: addr}, &ct)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	b.ReportAllocs()
	var out outcome
	for b.Loop() {
		if err := s.roundTrip(tg, time.Now(), 5*time.Second, &out); err != nil || out.status != 200 {
			b.Fatalf("status %d, err %v", out.status, err)
		}
	}
}

// A closed-loop run's whole request path (acquire, round trip, record) on
// one connection.
func BenchmarkClosedLoopRequest(b *testing.B) {
	addr := cannedServer(b)
	o := Options{URLs: []string{"http://" + addr + "/"}, Concurrency: 1}
	if err := o.setDefaults(); err != nil {
		b.Fatal(err)
	}
	base, _ := tlsConfig(false, "")
	r := &runner{o: o, dialer: h1Dialer{}, rec: newRecorder(1), ctx: context.Background()}
	r.targets, r.origins, _ = buildTargets(&r.o, base)
	w := &worker{slot: &slot{conns: make([]*connRef, 1)}, shard: r.rec.shards[0]}
	r.slots = []*slot{w.slot}
	defer r.closeAll()
	b.ReportAllocs()
	var seq int64
	for b.Loop() {
		now := time.Now()
		r.request(w, now, now, true, seq)
		seq++
	}
	if n := w.shard.c.responses; n != seq {
		b.Fatalf("%d responses of %d requests (errors %v)", n, seq, w.shard.c.errors)
	}
}
