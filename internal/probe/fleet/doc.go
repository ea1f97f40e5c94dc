// Package fleet runs penstock probe across several machines: a controller
// that holds the targets and modules and shards them, and agents that
// connect out to it (so that they work behind NAT), lease shards, probe
// them and stream the results back.
//
//   - The control plane is gRPC (protocol.go): Register, Lease, Heartbeat,
//     Drain, and Watch, a server stream that pushes the modules when they
//     change and tells an agent to drain.
//   - The data plane is a WebSocket per agent (stream.go): results in
//     numbered batches, each acknowledged by the controller once applied.
//     An agent that reconnects resends what was not acknowledged, and the
//     controller skips batches it had already applied, so that nothing is
//     lost or doubled.
//   - A shard leased to an agent that stops heartbeating goes back to the
//     queue when its lease times out, and another agent takes it, for the
//     targets of the shard whose results have not arrived. Each target's
//     result is kept once per cycle (controller.go).
//
// docs/probe.md ("Distributed agents") has the topology, the protocol,
// the failure handling and the security.
package fleet
