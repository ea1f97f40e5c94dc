package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEarlyHintsReachClientsBeforeTheUpstreamAnswers checks that a route's
// early_hints arrive as a 103 while the upstream is still working: the
// upstream answers only once the client has seen the 103, and the final
// response does not repeat the Link fields.
func TestEarlyHintsReachClientsBeforeTheUpstreamAnswers(t *testing.T) {
	hinted := make(chan struct{}, 1)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hinted:
		case <-time.After(5 * time.Second):
			http.Error(w, "no 103 seen by the client", http.StatusGatewayTimeout)
			return
		}
		io.WriteString(w, `{"outputs":[1]}`)
	}))
	g := startGateway(t, lines(`listeners:
  - {name: plain, address: "127.0.0.1:0", protocols: [h1, h2c]}
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict"}
    upstream: up
    early_hints:
      - "</v1/models/:model/assets/model_config.json>; rel=preload; as=fetch"
      - "</v1/models/:model/assets/tokenizer.bin>; rel=preload; as=fetch"
`, up))
	h3c, _ := h3Client(t)
	h1tls := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	wantLinks := []string{
		"</v1/models/resnet50/assets/model_config.json>; rel=preload; as=fetch",
		"</v1/models/resnet50/assets/tokenizer.bin>; rel=preload; as=fetch",
	}
	tests := []struct {
		name      string
		c         *http.Client
		url       string
		wantProto int
	}{
		{"HTTP/1.1", client, baseURL(g, "plain"), 1},
		{"HTTP/1.1 over TLS", h1tls, baseURL(g, "tls"), 1},
		{"HTTP/2 over TLS", h2Client(), baseURL(g, "tls"), 2},
		{"h2c", h2cClient(), baseURL(g, "plain"), 2},
		{"HTTP/3", h3c, baseURL(g, "tls"), 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			var links []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, code)
				links = h.Values("Link")
				hinted <- struct{}{}
				return nil
			}}
			ctx := httptrace.WithClientTrace(context.Background(), trace)
			req, _ := http.NewRequestWithContext(ctx, "POST", tc.url+"/v1/models/resnet50/predict", strings.NewReader(`{"inputs":[1]}`))
			resp, err := tc.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != tc.wantProto {
				t.Fatalf("got %s %d %q, want HTTP/%d 200", resp.Proto, resp.StatusCode, body, tc.wantProto)
			}
			if !slices.Equal(got, []int{103}) {
				t.Errorf("1xx responses %v, want [103]", got)
			}
			if !slices.Equal(links, wantLinks) {
				t.Errorf("103 Link fields:\n%q\nwant:\n%q", links, wantLinks)
			}
			if l := resp.Header.Values("Link"); len(l) != 0 {
				t.Errorf("final response repeats the hints: %q", l)
			}
		})
	}
}

// TestEarlyHintsNotSentToHTTP10 checks RFC 8297 §3 on the wire: an
// HTTP/1.0 client gets the final response as the first status line. The
// response's version is the server's own, HTTP/1.1 (RFC 9110 §6.2: a server
// sends the highest minor version it conforms to).
func TestEarlyHintsNotSentToHTTP10(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	g := startGateway(t, lines(`listeners: [{name: plain, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: predict
    match: {path: "/v1/models/:model/predict"}
    upstream: up
    early_hints: ["</v1/models/:model/assets/tokenizer.bin>; rel=preload; as=fetch"]
`, up))
	tests := []struct {
		name, proto, wantFirst string
	}{
		{"HTTP/1.0", "HTTP/1.0", "HTTP/1.1 200 OK"},
		{"HTTP/1.1", "HTTP/1.1", "HTTP/1.1 103 Early Hints"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.Addr("plain").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET /v1/models/m/predict %s\r\nHost: x\r\nConnection: close\r\n\r\n", tc.proto)
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(line); got != tc.wantFirst {
				t.Errorf("first status line %q, want %q", got, tc.wantFirst)
			}
		})
	}
}
