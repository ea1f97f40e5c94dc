package loadtest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Result is a run's summary. Counts and latencies cover the measured part
// of the run (not the warm-up). It marshals to the --json summary.
type Result struct {
	Targets     []string  `json:"targets"`
	Proto       string    `json:"proto"`
	Mode        string    `json:"mode"`              // open, closed or handshakes
	Profile     string    `json:"profile,omitempty"` // open loop
	Rate        float64   `json:"rate,omitempty"`    // open loop: constant rate; closed loop: cap; storm: handshakes/s
	Concurrency int       `json:"concurrency,omitempty"`
	Connections int       `json:"connections"`
	Streams     int       `json:"streams"`
	Start       time.Time `json:"start"` // wall-clock start of the measured part
	// Seconds is the measured window: from the end of the warm-up until
	// the last measured request (or handshake) finished, or the end of the
	// schedule if that is later. Rates are over this window.
	Seconds       float64 `json:"seconds"`
	WarmupSeconds float64 `json:"warmup_seconds"`
	// OverrunSeconds is how long after the end of the schedule the last
	// measured request or handshake finished: a server that cannot keep up
	// with the asked rate finishes its work late, and the rates above are
	// then below the asked one.
	OverrunSeconds float64 `json:"overrun_seconds"`

	// Requests is every measured request that finished, with a response
	// or an error; Unfinished those still in flight when the run gave up.
	Requests   int64 `json:"requests"`
	Responses  int64 `json:"responses"`
	Unfinished int64 `json:"unfinished"`
	// Throughput is responses per second over Seconds.
	Throughput float64 `json:"throughput"`
	// LateStarts counts open-loop requests (or handshakes) that started
	// more than LateThreshold after their intended time.
	LateStarts    int64   `json:"late_starts"`
	LateThreshold float64 `json:"late_threshold_ms"`
	// Handshakes counts the handshakes of a storm that completed.
	Handshakes int64 `json:"handshakes,omitempty"`
	// Errors by kind: connect, tls, timeout, reset, closed, protocol,
	// status_5xx (those are responses too), other.
	Errors map[string]int64 `json:"errors"`
	// ErrorSamples hold the first error message of each kind.
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	ErrorsAll    int64             `json:"errors_total"`
	Status       map[string]int64  `json:"status"`
	Bytes        int64             `json:"bytes"`
	Conns        int64             `json:"connections_opened"`
	// Phases holds the latency percentiles of each phase with samples.
	Phases map[string]Percentiles `json:"phases"`
	// Warmup counts the warm-up's requests.
	Warmup int64 `json:"warmup_requests"`
}

// Percentiles of one phase, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	// StdDev is the standard deviation of the latencies around Mean.
	StdDev float64 `json:"stddev_ms"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	P999   float64 `json:"p99_9_ms"`
	Max    float64 `json:"max_ms"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count:  h.TotalCount(),
		Mean:   h.Mean() / 1000,
		StdDev: h.StdDev() / 1000,
		P50:    ms(h.ValueAtQuantile(50)),
		P90:    ms(h.ValueAtQuantile(90)),
		P99:    ms(h.ValueAtQuantile(99)),
		P999:   ms(h.ValueAtQuantile(99.9)),
		Max:    ms(h.Max()),
	}
}

func (r *runner) result(c *collector) *Result {
	o := &r.o
	tot := c.last
	res := &Result{
		Targets:       o.URLs,
		Proto:         o.Proto,
		Mode:          o.mode(),
		Concurrency:   o.Concurrency,
		Connections:   o.Connections,
		Streams:       o.Streams,
		Start:         r.measure,
		WarmupSeconds: o.Warmup.Seconds(),
		Responses:     tot.responses,
		LateStarts:    tot.late,
		LateThreshold: float64(o.Late) / 1e6,
		Errors:        map[string]int64{},
		Status:        map[string]int64{},
		Bytes:         tot.bytes,
		Conns:         tot.conns,
		Phases:        map[string]Percentiles{},
		Warmup:        tot.warmup,
	}
	switch res.Mode {
	case ModeOpen:
		res.Profile = o.Profile.String()
		if c, ok := o.Profile.(Constant); ok {
			res.Rate = float64(c)
		}
	case ModeClosed:
		res.Rate = o.Rate
	case ModeHandshakes:
		res.Rate = o.Handshakes
		res.Handshakes = c.total[phaseHandshake].TotalCount()
	}
	for k, n := range tot.errors {
		if n > 0 {
			res.Errors[errKind(k).String()] = n
			res.ErrorsAll += n
			if m := tot.samples[k]; m != "" {
				if res.ErrorSamples == nil {
					res.ErrorSamples = map[string]string{}
				}
				res.ErrorSamples[errKind(k).String()] = m
			}
		}
	}
	for code, n := range tot.status {
		res.Status[strconv.Itoa(code)] = n
	}
	res.Requests = tot.responses + tot.failed()
	switch res.Mode {
	case ModeOpen:
		res.Unfinished = max(r.scheduled.Load()-res.Requests, 0)
	case ModeHandshakes:
		if o.HandshakeRequest {
			res.Unfinished = max(r.scheduled.Load()-res.Requests, 0)
		} else {
			res.Unfinished = max(r.scheduled.Load()-res.Handshakes-tot.failed(), 0)
		}
	}
	last := r.stopAt
	if tot.lastDone.After(last) {
		last = tot.lastDone
		res.OverrunSeconds = tot.lastDone.Sub(r.stopAt).Seconds()
	}
	window := last.Sub(r.measure)
	if window <= 0 {
		window = time.Millisecond
	}
	res.Seconds = window.Seconds()
	res.Throughput = float64(tot.responses) / res.Seconds
	if res.Mode == ModeHandshakes && !o.HandshakeRequest {
		res.Throughput = float64(res.Handshakes) / res.Seconds
	}
	for p, h := range c.total {
		if h.TotalCount() > 0 {
			res.Phases[phaseNames[p]] = percentiles(h)
		}
	}
	return res
}

// startMeta is the run log's header: the run's parameters.
func (r *runner) startMeta() map[string]string {
	o := &r.o
	m := map[string]string{
		"target":      strings.Join(o.URLs, " "),
		"proto":       o.Proto,
		"mode":        o.mode(),
		"method":      o.Method,
		"duration":    o.Duration.String(),
		"warmup":      o.Warmup.String(),
		"connections": strconv.Itoa(o.Connections),
		"streams":     strconv.Itoa(o.Streams),
		"timeout":     o.Timeout.String(),
		"version":     o.Version,
		"start":       r.measure.UTC().Format(time.RFC3339Nano),
		"interval":    o.Interval.String(),
	}
	switch o.mode() {
	case ModeOpen:
		m["profile"] = o.Profile.String()
		if c, ok := o.Profile.(Constant); ok {
			m["rate"] = fmtRate(float64(c))
		}
	case ModeClosed:
		m["concurrency"] = strconv.Itoa(o.Concurrency)
		if o.Rate > 0 {
			m["rate"] = fmtRate(o.Rate)
		}
	case ModeHandshakes:
		m["handshakes"] = fmtRate(o.Handshakes)
		m["handshake_request"] = strconv.FormatBool(o.HandshakeRequest)
	}
	if o.Requests > 0 {
		m["requests_limit"] = strconv.FormatInt(o.Requests, 10)
	}
	if o.Churn > 0 {
		m["churn"] = strconv.Itoa(o.Churn)
	}
	if o.Group != "" {
		m["group"] = o.Group
	}
	return m
}

// meta is the run log's trailer: the summary counts.
func (res *Result) meta() map[string]string {
	m := map[string]string{
		"requests":    strconv.FormatInt(res.Requests, 10),
		"responses":   strconv.FormatInt(res.Responses, 10),
		"errors":      strconv.FormatInt(res.ErrorsAll, 10),
		"late_starts": strconv.FormatInt(res.LateStarts, 10),
		"unfinished":  strconv.FormatInt(res.Unfinished, 10),
		"throughput":  strconv.FormatFloat(res.Throughput, 'f', 1, 64),
		"seconds":     strconv.FormatFloat(res.Seconds, 'f', 3, 64),
	}
	for k, n := range res.Errors {
		m["errors_"+k] = strconv.FormatInt(n, 10)
	}
	for code, n := range res.Status {
		m["status_"+code] = strconv.FormatInt(n, 10)
	}
	return m
}

// WriteText prints the human summary.
func (res *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	what := ""
	switch res.Mode {
	case ModeOpen:
		what = "open loop, " + res.Profile
	case ModeClosed:
		what = fmt.Sprintf("closed loop, %d workers", res.Concurrency)
		if res.Rate > 0 {
			what += fmt.Sprintf(", at most %s req/s", fmtRate(res.Rate))
		}
	case ModeHandshakes:
		what = fmt.Sprintf("handshake storm, %s/s", fmtRate(res.Rate))
	}
	fmt.Fprintf(&b, "%s %s: %s, %d connections", strings.Join(res.Targets, " "), res.Proto, what, res.Connections)
	if res.Streams > 1 {
		fmt.Fprintf(&b, " × %d streams", res.Streams)
	}
	fmt.Fprintf(&b, "\n  measured   %.2fs after %.fs warm-up (%d warm-up requests)\n", res.Seconds, res.WarmupSeconds, res.Warmup)
	if res.OverrunSeconds*1000 > res.LateThreshold {
		fmt.Fprintf(&b, "  overrun    the last finished %.2fs after the schedule ended: the rates below are what completed\n", res.OverrunSeconds)
	}
	if res.Mode == ModeHandshakes {
		fmt.Fprintf(&b, "  handshakes %d (%.1f/s)\n", res.Handshakes, float64(res.Handshakes)/res.Seconds)
	}
	fmt.Fprintf(&b, "  requests   %d finished: %d responses, %d failed; %d unfinished\n",
		res.Requests, res.Responses, res.Requests-res.Responses, res.Unfinished)
	fmt.Fprintf(&b, "  throughput %.1f responses/s, %.2f MB/s read\n", float64(res.Responses)/res.Seconds, float64(res.Bytes)/res.Seconds/1e6)
	fmt.Fprintf(&b, "  late       %d starts more than %gms after their intended time\n", res.LateStarts, res.LateThreshold)
	fmt.Fprintf(&b, "\n  %-11s %9s %9s %9s %9s %9s %9s %9s\n", "phase (ms)", "count", "mean", "p50", "p90", "p99", "p99.9", "max")
	for _, name := range phaseNames {
		p, ok := res.Phases[name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "  %-11s %9d %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, p.Count, p.Mean, p.P50, p.P90, p.P99, p.P999, p.Max)
	}
	if len(res.Status) > 0 {
		b.WriteString("\n  status    ")
		for _, code := range slices.Sorted(maps.Keys(res.Status)) {
			fmt.Fprintf(&b, " %s: %d", code, res.Status[code])
		}
		b.WriteString("\n")
	}
	if len(res.Errors) > 0 {
		b.WriteString("  errors    ")
		for _, k := range slices.Sorted(maps.Keys(res.Errors)) {
			fmt.Fprintf(&b, " %s: %d", k, res.Errors[k])
		}
		b.WriteString("\n")
		for _, k := range slices.Sorted(maps.Keys(res.ErrorSamples)) {
			fmt.Fprintf(&b, "  first %-7s %s\n", k, res.ErrorSamples[k])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
