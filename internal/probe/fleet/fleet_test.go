package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lockedBuffer is the controller's output, read by the test at the end.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// acceptAndClose listens on loopback and closes what it accepts.
func acceptAndClose(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// startController serves c on a loopback port and returns its address.
func startController(t *testing.T, c *Controller) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := c.Server()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestAgentKilledMidCycle is issue 18's acceptance 5: a controller, three
// agents, 30,000 targets; one agent is killed in the middle of the first
// cycle and every stream is cut in the middle of the second. Every target
// has exactly one result in each cycle.
func TestAgentKilledMidCycle(t *testing.T) {
	skipUnderRace(t)
	agentKilledMidCycle(t, 30000)
}

// TestAgentKilledMidCycleSmall is the same with 3,000 targets, under the
// race detector too.
func TestAgentKilledMidCycleSmall(t *testing.T) {
	agentKilledMidCycle(t, 3000)
}

func agentKilledMidCycle(t *testing.T, n int) {
	const cycles = 3
	// Most targets are addresses of 127.0.0.0/8 where nothing listens
	// (refused at once, no descriptor held); one in a hundred is a
	// listener that accepts.
	var live []string
	for range 4 {
		live = append(live, acceptAndClose(t))
	}
	var text strings.Builder
	for i := range n {
		if i%100 == 0 {
			fmt.Fprintf(&text, "%s\n", live[i/100%len(live)])
			continue
		}
		fmt.Fprintf(&text, "127.77.%d.%d:9\n", i/250, i%250+1)
	}
	out := &lockedBuffer{}
	c, err := NewController(ControllerConfig{
		TargetsFile: writeFile(t, "targets.txt", text.String()), Token: "s3cret",
		Shards: 60, LeaseTimeout: 3 * time.Second, Interval: time.Millisecond, Cycles: cycles, Out: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := startController(t, c)
	runDone := make(chan struct{})
	go func() { c.Run(context.Background()); close(runDone) }()

	var agents []*Agent
	var cancels []context.CancelFunc
	var wg sync.WaitGroup
	for i := range 3 {
		a, err := NewAgent(AgentConfig{Controller: addr, Token: "s3cret", Vantage: fmt.Sprintf("site-%d", i), Concurrency: 64})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		agents, cancels = append(agents, a), append(cancels, cancel)
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(ctx) }()
	}
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
		wg.Wait()
	}()

	// Kill site-0 once a sixth of the first cycle is in and it holds
	// leases: its unacknowledged results die with it.
	waitFor(t, "the first cycle to be under way", time.Minute, func() bool { return reached(c, 1, uint64(n/6)) })
	held := 0
	for _, info := range c.Agents() {
		if info.Vantage == "site-0" {
			held = info.Leases
		}
	}
	cancels[0]()
	// Cut every stream once the second cycle is under way: the agents
	// reconnect and resume.
	waitFor(t, "the second cycle", 2*time.Minute, func() bool { return reached(c, 2, uint64(n/6)) })
	c.dropStreams()
	select {
	case <-runDone:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the cycles did not complete: %+v", c.Cycles())
	}

	// The output: each target exactly once per cycle.
	seen := make(map[[2]uint64]int)
	vantages := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		seen[[2]uint64{rec.Cycle, rec.Index}]++
		vantages[rec.Vantage]++
	}
	for cy := uint64(1); cy <= cycles; cy++ {
		missing, doubled := 0, 0
		for i := range uint64(n) {
			switch seen[[2]uint64{cy, i}] {
			case 0:
				missing++
			case 1:
			default:
				doubled++
			}
		}
		if missing > 0 || doubled > 0 {
			t.Errorf("cycle %d: %d targets without a result, %d with more than one", cy, missing, doubled)
		}
	}
	if len(seen) != n*cycles {
		t.Errorf("%d (cycle, target) results, want %d", len(seen), n*cycles)
	}
	sums := c.Cycles()
	if len(sums) != cycles {
		t.Fatalf("%d cycles done, want %d", len(sums), cycles)
	}
	if held > 0 && sums[0].Moved == 0 {
		t.Errorf("cycle 1: site-0 held %d leases when killed, and none moved: %+v", held, sums[0])
	}
	for i, a := range agents[1:] {
		if a.Stats().Reconnects == 0 {
			t.Errorf("site-%d never reconnected after its stream was cut", i+1)
		}
	}
	for _, v := range []string{"site-1", "site-2"} {
		if vantages[v] == 0 {
			t.Errorf("no result from %s: %v", v, vantages)
		}
	}
	t.Logf("cycles: %+v; results by vantage: %v", sums, vantages)

	// The HTTP API: site-0 is unhealthy, the others healthy.
	var infos []AgentInfo
	waitFor(t, "site-0 to be reported gone", time.Minute, func() bool {
		getJSON(t, "http://"+addr+"/agents", &infos)
		for _, a := range infos {
			if a.Vantage == "site-0" {
				return !a.Healthy
			}
		}
		return false
	})
	for _, a := range infos {
		if a.Vantage != "site-0" && !a.Healthy {
			t.Errorf("%s reported unhealthy", a.Vantage)
		}
	}
	var res ResultsInfo
	getJSON(t, "http://"+addr+"/results", &res)
	var total float64
	for _, cnt := range res.Counts {
		total += cnt.Results
	}
	if total != float64(n*cycles) || len(res.Done) != cycles {
		t.Errorf("/results: %v results in %d cycles, want %d in %d: %+v", total, len(res.Done), n*cycles, cycles, res)
	}
	// A target probed from several vantage points over the cycles shows
	// each one's result.
	var one struct {
		Vantages map[string]VantageResult `json:"vantages"`
	}
	getJSON(t, "http://"+addr+"/results?target="+live[0], &one)
	if len(one.Vantages) == 0 || !one.Vantages[firstKey(one.Vantages)].Success {
		t.Errorf("/results?target=%s: %+v", live[0], one.Vantages)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`penstock_probe_results_total{module="tcp_connect",reason="connect_refused",vantage="site-1"}`, `penstock_probe_fleet_agent_up{agent=`, `penstock_probe_fleet_cycles_total 3`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// reached reports whether the controller has got results for at least got
// targets of the given cycle, or is past it (a stalled test goroutine may
// miss a short cycle; the scenario then happens in the next one).
func reached(c *Controller, cycle, got uint64) bool {
	cy, n := c.Received()
	return cy > cycle || (cy == cycle && n >= got) || uint64(len(c.Cycles())) >= cycle
}

func firstKey(m map[string]VantageResult) string {
	for k := range m {
		return k
	}
	return ""
}

func TestAgentsNeedTheToken(t *testing.T) {
	c, err := NewController(ControllerConfig{TargetsFile: writeFile(t, "targets.txt", "127.0.0.1:9\n"), Token: "right"})
	if err != nil {
		t.Fatal(err)
	}
	addr := startController(t, c)
	a, err := NewAgent(AgentConfig{Controller: addr, Token: "wrong", Vantage: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var reg RegisterReply
	err = a.rpc.call(context.Background(), "Register", &RegisterRequest{Vantage: "x"}, &reg)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("register with a wrong token: %v, want Unauthenticated", err)
	}
	resp, err := http.Get("http://" + addr + "/stream?agent=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("stream without the token: %s, want 401", resp.Status)
	}
}

func TestControllerRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, targets, modules, want string
	}{
		{name: "malformed target line", targets: "127.0.0.1:80\n10.0.0.0/33:80\n", want: "targets.txt:2: "},
		{name: "unknown module", targets: "127.0.0.1:80 web\n", want: `targets.txt:1: unknown module "web"`},
		{name: "unsupported blackbox option", targets: "127.0.0.1:80 web\n", modules: "modules:\n  web:\n    prober: http\n    http:\n      oauth2: {}\n", want: "blackbox.yml:5: modules.web.http.oauth2: not supported"},
		{name: "no targets", targets: "# nothing\n", want: "no targets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ControllerConfig{TargetsFile: writeFile(t, "targets.txt", tc.targets)}
			if tc.modules != "" {
				cfg.ModulesFile = writeFile(t, "blackbox.yml", tc.modules)
			}
			_, err := NewController(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// acceptAndHold listens on loopback and keeps what it accepts open and
// silent until the test ends.
func acceptAndHold(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// TestEveryVantage probes each target from every vantage point in each
// cycle: two agents share site-a's pass, one does site-b's, and site-c's
// only agent is killed during the first cycle, whose pass is given up
// after the lease timeout while the cycle completes for the others.
func TestEveryVantage(t *testing.T) {
	const n, cycles = 600, 2
	refused, silent := acceptAndClose(t), acceptAndHold(t)
	var text strings.Builder
	for i := range n {
		if i%20 == 0 {
			// Probes that wait for an answer until their timeout keep
			// each pass busy for a few seconds.
			fmt.Fprintf(&text, "%s wait\n", silent)
			continue
		}
		fmt.Fprintf(&text, "%s\n", refused)
	}
	modules := "modules:\n  tcp_connect:\n    prober: tcp\n  wait:\n    prober: tcp\n    timeout: 1s\n    tcp:\n      query_response:\n        - expect: \"^never\"\n"
	out := &lockedBuffer{}
	c, err := NewController(ControllerConfig{
		TargetsFile: writeFile(t, "targets.txt", text.String()), ModulesFile: writeFile(t, "blackbox.yml", modules),
		Shards: 12, LeaseTimeout: time.Second, Interval: time.Millisecond, Cycles: cycles, Out: out, EveryVantage: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := startController(t, c)
	var wg sync.WaitGroup
	agents := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range agents {
			cancel()
		}
		wg.Wait()
	}()
	for i, v := range []string{"site-a", "site-a", "site-b", "site-c"} {
		a, err := NewAgent(AgentConfig{Controller: addr, Vantage: v, Concurrency: 8})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		agents[fmt.Sprintf("%s/%d", v, i)] = cancel
		wg.Add(1)
		go func() { defer wg.Done(); a.Run(ctx) }()
	}
	waitFor(t, "four agents", time.Minute, func() bool { return len(c.Agents()) == 4 })
	runDone := make(chan struct{})
	go func() { c.Run(context.Background()); close(runDone) }()
	// Kill site-c once it holds leases in the first cycle.
	waitFor(t, "site-c to lease", time.Minute, func() bool {
		for _, info := range c.Agents() {
			if info.Vantage == "site-c" && info.Leases > 0 {
				return true
			}
		}
		return false
	})
	agents["site-c/3"]()
	select {
	case <-runDone:
	case <-time.After(3 * time.Minute):
		t.Fatalf("the cycles did not complete: %+v", c.Cycles())
	}

	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	for sc.Scan() {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		seen[fmt.Sprintf("%d/%s/%d", rec.Cycle, rec.Vantage, rec.Index)]++
	}
	for cy := 1; cy <= cycles; cy++ {
		for _, v := range []string{"site-a", "site-b"} {
			missing, doubled := 0, 0
			for i := range n {
				switch seen[fmt.Sprintf("%d/%s/%d", cy, v, i)] {
				case 0:
					missing++
				case 1:
				default:
					doubled++
				}
			}
			if missing > 0 || doubled > 0 {
				t.Errorf("cycle %d, %s: %d targets without a result, %d with more than one", cy, v, missing, doubled)
			}
		}
	}
	sums := c.Cycles()
	if len(sums) != cycles {
		t.Fatalf("%d cycles done, want %d", len(sums), cycles)
	}
	if got := strings.Join(sums[0].Vantages, ","); got != "site-a,site-b" {
		t.Errorf("cycle 1 done by %q, want site-a,site-b: %+v", got, sums[0])
	}
	if got := strings.Join(sums[0].Abandoned, ","); got != "site-c" {
		t.Errorf("cycle 1 abandoned %q, want site-c: %+v", got, sums[0])
	}
	if got := strings.Join(sums[1].Vantages, ","); got != "site-a,site-b" || len(sums[1].Abandoned) != 0 {
		t.Errorf("cycle 2: vantages %q, abandoned %v; want site-a,site-b and none", got, sums[1].Abandoned)
	}
	var one struct {
		Vantages map[string]VantageResult `json:"vantages"`
	}
	getJSON(t, "http://"+addr+"/results?target="+silent, &one)
	for _, v := range []string{"site-a", "site-b"} {
		if _, ok := one.Vantages[v]; !ok {
			t.Errorf("/results?target=%s lacks %s: %+v", silent, v, one.Vantages)
		}
	}
	t.Logf("cycles: %+v", sums)
}
