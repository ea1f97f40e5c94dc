// Command holdconns opens N keep-alive HTTP/1.1 connections to a server,
// sends one request on each and reads its response, then holds them all
// idle, so that the server's memory per idle keep-alive connection can be
// measured (its RSS with the connections held, minus before, over N).
// With -proto h2 the connections are HTTP/2 over TLS (ALPN h2, certificate
// not verified): each sends the preface, its SETTINGS and one GET, reads
// the response to its end (acknowledging the server's SETTINGS and PINGs),
// and then stays silent (h2.go).
//
// It prints "held N" on stdout once every connection has had its response,
// then holds them until -hold has passed or it gets SIGTERM or SIGINT, and
// exits (closing the connections). Only loopback addresses are accepted.
//
// Usage:
//
//	holdconns -addr 127.0.0.1:8080 -n 10000 -hold 60s
//	holdconns -proto h2 -addr 127.0.0.1:8443 -n 5000 -hold 60s
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "", "host:port of the server, on a loopback address (required)")
	n := flag.Int("n", 10000, "connections to open and hold")
	parallel := flag.Int("parallel", 64, "connections being opened at once")
	hold := flag.Duration("hold", 60*time.Second, "how long to hold them at most")
	timeout := flag.Duration("timeout", 30*time.Second, "time allowed to open them all")
	proto := flag.String("proto", "h1", "h1 (plain HTTP/1.1) or h2 (HTTP/2 over TLS)")
	flag.Parse()
	switch *proto {
	case "h1":
	case "h2":
		open = openH2
	default:
		fmt.Fprintf(os.Stderr, "holdconns: -proto must be h1 or h2, not %q\n", *proto)
		os.Exit(2)
	}
	if err := run(*addr, *n, *parallel, *hold, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "holdconns: %v\n", err)
		os.Exit(1)
	}
}

func run(addr string, n, parallel int, hold, timeout time.Duration) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return errors.New("-addr must be a loopback IP address and port")
	}
	if n <= 0 || n > 100_000 || parallel <= 0 {
		return errors.New("-n must be in 1..100000 and -parallel positive")
	}
	// Whatever happens, the process ends.
	time.AfterFunc(timeout+hold+10*time.Second, func() {
		fmt.Fprintln(os.Stderr, "holdconns: watchdog, exiting")
		os.Exit(2)
	})
	deadline := time.Now().Add(timeout)
	req := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: penstock-holdconns\r\n\r\n")
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			d := net.Dialer{Deadline: deadline}
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				c, err := open(&d, addr, req, deadline)
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("connection %d: %w", i, err))
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	fmt.Printf("held %d\n", n)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	t := time.NewTimer(hold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sig:
	}
	return nil
}

// open opens one connection and leaves it idle after one exchange: openH1,
// or openH2 with -proto h2.
var open = openH1

// openH1 dials, sends one request and reads its whole response, leaving the
// connection idle and kept alive.
func openH1(d *net.Dialer, addr string, req []byte, deadline time.Time) (net.Conn, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(deadline)
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.Close()
		return nil, fmt.Errorf("response %d not kept alive (%v)", resp.StatusCode, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
