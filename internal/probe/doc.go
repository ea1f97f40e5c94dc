// Package probe is penstock's network prober: one probe of a target with a
// module (http over HTTP/1.1, HTTP/2 or HTTP/3; tcp with send/expect and
// STARTTLS; tls; dns over UDP or TCP; icmp; grpc health) gives a Result with
// per-phase timings, the TLS and QUIC facts of the connection and, when it
// failed, a Reason from a fixed vocabulary.
//
// The same probes serve two ways of running:
//
//   - the exporter (Exporter), a drop-in for Prometheus's blackbox_exporter:
//     /probe?target=…&module=… answers with blackbox_exporter's metric names,
//     configured by a blackbox.yml (LoadModules refuses, with the line, what
//     is not supported);
//   - the scanner (Scanner), which probes a target list (Targets, reloaded on
//     change through an atomic pointer) continuously or once, paced by a
//     global token bucket and a per-destination sliding window, with a
//     bounded number of probes in flight, and writes JSON lines.
//
// One file per probe kind, as blackbox_exporter's prober/ has; phase
// timings of HTTP come from one httptrace.ClientTrace.
package probe
