package h1_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/penstock-dev/penstock/internal/engine/h1"
)

// settingsValue encodes settings as an HTTP2-Settings field value.
func settingsValue(ss ...http2.Setting) string {
	var b []byte
	for _, s := range ss {
		b = binary.BigEndian.AppendUint16(b, uint16(s.ID))
		b = binary.BigEndian.AppendUint32(b, s.Val)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// An HTTP/1.1 request with "Upgrade: h2c" on a listener that speaks h2c is
// answered 101 and then over HTTP/2 on stream 1 (RFC 7540 §3.2); one that
// cannot be upgraded is served over HTTP/1.1 as if it had not asked.
func TestUpgradeToH2C(t *testing.T) {
	valid := settingsValue(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	tests := []struct {
		name    string
		h2c     bool
		request string
		want    string // "h2" or the HTTP/1.1 status line's code
	}{
		{name: "GET with HTTP2-Settings", h2c: true, want: "h2",
			request: "GET /echo?q=1 HTTP/1.1\r\nHost: example.test\r\nX-Test: kept\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + valid + "\r\n\r\n"},
		{name: "empty settings", h2c: true, want: "h2",
			request: "GET /echo HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: \r\n\r\n"},
		{name: "listener without h2c", h2c: false, want: "200",
			request: "GET /echo HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + valid + "\r\n\r\n"},
		{name: "a request with a body stays HTTP/1.1", h2c: true, want: "200",
			request: "POST /echo HTTP/1.1\r\nHost: example.test\r\nContent-Length: 2\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + valid + "\r\n\r\nhi"},
		{name: "HTTP2-Settings not base64url", h2c: true, want: "200",
			request: "GET /echo HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: !!!\r\n\r\n"},
		{name: "HTTP2-Settings not a whole setting", h2c: true, want: "200",
			request: "GET /echo HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n"},
		{name: "an invalid setting", h2c: true, want: "200",
			request: "GET /echo HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + settingsValue(http2.Setting{ID: http2.SettingEnablePush, Val: 7}) + "\r\n\r\n"},
		{name: "two HTTP2-Settings fields", h2c: true, want: "200",
			request: "GET /echo HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + valid + "\r\nHTTP2-Settings: " + valid + "\r\n\r\n"},
		{name: "no Connection: Upgrade", h2c: true, want: "200",
			request: "GET /echo HTTP/1.1\r\nHost: example.test\r\nUpgrade: h2c\r\nHTTP2-Settings: " + valid + "\r\n\r\n"},
		{name: "HTTP/1.0", h2c: true, want: "200",
			request: "GET /echo HTTP/1.0\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + valid + "\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := startServer(t, func(o *h1.Options) { o.H2C = tt.h2c })
			c := dial(t, addr)
			c.send(tt.request)
			if tt.want != "h2" {
				resp, body := c.response("GET")
				if got := resp.Status[:3]; got != tt.want || resp.ProtoMajor != 1 || !strings.HasPrefix(resp.Header.Get("X-Proto"), "HTTP/1.") {
					t.Fatalf("got %s %s (engine saw %s); want %s over HTTP/1", resp.Proto, resp.Status, resp.Header.Get("X-Proto"), tt.want)
				}
				if strings.HasPrefix(tt.request, "POST") && body != "hi" {
					t.Errorf("body %q, want hi", body)
				}
				return
			}
			resp, _ := c.response("GET")
			if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "h2c") {
				t.Fatalf("got %s, want 101 with Upgrade: h2c", resp.Status)
			}
			fr := http2.NewFramer(c.nc, c.br)
			fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			c.send(http2.ClientPreface)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			f, err := fr.ReadFrame()
			if sf, ok := f.(*http2.SettingsFrame); err != nil || !ok || sf.IsAck() {
				t.Fatalf("first frame after the 101: %v %v, want the server's SETTINGS", f, err)
			}
			// Stream 1 answers the upgraded request; stream 3 is the
			// client's next request on the same connection.
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			for _, hf := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "example.test"}, {":path", "/echo?next=1"}} {
				enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
			}
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
			got := map[uint32]map[string]string{}
			ended := map[uint32]bool{}
			acks := 0
			for !ended[1] || !ended[3] {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("reading the responses: %v", err)
				}
				switch f := f.(type) {
				case *http2.MetaHeadersFrame:
					m := map[string]string{}
					for _, hf := range f.Fields {
						m[hf.Name] = hf.Value
					}
					got[f.StreamID] = m
					ended[f.StreamID] = ended[f.StreamID] || f.StreamEnded()
				case *http2.DataFrame:
					ended[f.StreamID] = ended[f.StreamID] || f.StreamEnded()
				case *http2.SettingsFrame:
					if f.IsAck() {
						acks++
					}
				case *http2.GoAwayFrame, *http2.RSTStreamFrame:
					t.Fatalf("unexpected %v", f)
				}
			}
			if acks != 1 {
				// The 101 acknowledges HTTP2-Settings (RFC 7540 §3.2.1).
				t.Errorf("%d SETTINGS ACKs, want 1 (for the SETTINGS after the preface only)", acks)
			}
			first := got[1]
			if first[":status"] != "200" || first["x-proto"] != "HTTP/2.0" || first["x-method"] != "GET" || first["x-host"] != "example.test" ||
				first["x-path"] != "/echo" || first["x-query"] != "q=1" && tt.name == "GET with HTTP2-Settings" || first["x-scheme"] != "http" {
				t.Errorf("stream 1: %v; want the upgraded request answered over HTTP/2", first)
			}
			if tt.name == "GET with HTTP2-Settings" && first["x-test-echo"] != "kept" {
				t.Errorf("stream 1 lost the request's X-Test field: %v", first)
			}
			if next := got[3]; next[":status"] != "200" || next["x-query"] != "next=1" {
				t.Errorf("stream 3: %v; want the next request on the upgraded connection", next)
			}
		})
	}
}

// The HTTP2-Settings field is taken as the client's SETTINGS: a window of
// 2 bytes holds stream 1's response to its first 2 bytes.
func TestUpgradeToH2CTakesItsSettings(t *testing.T) {
	addr, _ := startServer(t, func(o *h1.Options) { o.H2C = true })
	c := dial(t, addr)
	c.send("GET /slow HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " +
		settingsValue(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 2}) + "\r\n\r\n")
	if resp, _ := c.response("GET"); resp.StatusCode != 101 {
		t.Fatalf("got %s, want 101", resp.Status)
	}
	fr := http2.NewFramer(c.nc, c.br)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.send(http2.ClientPreface)
	fr.WriteSettings()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			if string(d.Data()) != "sl" || d.StreamEnded() {
				t.Fatalf("first DATA on stream 1: %q (end %v), want the 2 bytes the window allows", d.Data(), d.StreamEnded())
			}
			break
		}
	}
	fr.WriteWindowUpdate(1, 100)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			if string(d.Data()) != "ow" || !d.StreamEnded() {
				t.Fatalf("DATA after the window update: %q (end %v), want the rest", d.Data(), d.StreamEnded())
			}
			return
		}
	}
}

// curl --http2 on a cleartext URL asks for the upgrade: it gets HTTP/2.
func TestUpgradeToH2CWithCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (scripts/test installs it)")
	}
	addr, _ := startServer(t, func(o *h1.Options) { o.H2C = true })
	out, err := exec.Command("curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version} %{response_code}\n",
		"http://"+addr+"/echo", "http://"+addr+"/echo").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if got := string(out); got != "2 200\n2 200\n" {
		t.Errorf("curl --http2 reported %q, want HTTP/2 and 200 twice", got)
	}
}
