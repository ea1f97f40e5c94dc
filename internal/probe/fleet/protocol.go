package fleet

import (
	"context"
	"encoding/json"
	"time"

	"github.com/penstock-dev/penstock/internal/probe"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

// The control plane is a gRPC service whose descriptor is written by hand
// and whose messages travel as JSON: the project builds without protoc (no
// generated code, no .proto toolchain in the build), and the messages are
// few and small, exchanged a few times per lease timeout per agent, where
// JSON's cost does not matter. gRPC still gives the framing, deadlines,
// metadata (the token) and the server stream. A client asks for the codec
// with grpc.CallContentSubtype(codecName) (content-type
// application/grpc+json).

const (
	codecName   = "json"
	serviceName = "penstock.probe.v1.Control"
)

func init() { encoding.RegisterCodec(jsonCodec{}) }

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return codecName }

// RegisterRequest is an agent introducing itself.
type RegisterRequest struct {
	// Vantage names the agent's point of view (its site, region or
	// host); results carry it as the label vantage. Default: the host
	// name.
	Vantage string `json:"vantage"`
}

// RegisterReply gives the agent its identity and the configuration.
type RegisterReply struct {
	AgentID string `json:"agent_id"`
	// LeaseTimeoutMS is how long a lease lasts without a heartbeat.
	LeaseTimeoutMS int64  `json:"lease_timeout_ms"`
	Config         Config `json:"config"`
}

// Config is what agents probe with: the modules file's text (empty: the
// built-in modules), and its version, which grows with each change.
type Config struct {
	Version uint64 `json:"version"`
	Modules string `json:"modules"`
}

// LeaseRequest asks for up to Max shards.
type LeaseRequest struct {
	AgentID string `json:"agent_id"`
	Max     int    `json:"max"`
}

// LeaseReply holds the shards leased, none when there is nothing to do
// (the agent asks again after RetryMS), and Drain when the agent should
// finish what it has and leave.
type LeaseReply struct {
	Leases  []Lease `json:"leases"`
	RetryMS int64   `json:"retry_ms"`
	Drain   bool    `json:"drain"`
}

// Lease is one shard of one cycle: the targets of the shard whose results
// the controller has not got yet.
type Lease struct {
	Cycle uint64 `json:"cycle"`
	Shard int    `json:"shard"`
	Items []Item `json:"items"`
}

// Item is one target of a lease; Index is its place in the target list.
type Item struct {
	Index  uint64 `json:"index"`
	Target string `json:"target"`
	Module string `json:"module"`
}

// HeartbeatRequest keeps an agent's leases.
type HeartbeatRequest struct {
	AgentID string `json:"agent_id"`
}

// HeartbeatReply says whether the controller knows the agent (an agent it
// forgot registers again) and the configuration's version.
type HeartbeatReply struct {
	Known         bool   `json:"known"`
	ConfigVersion uint64 `json:"config_version"`
}

// DrainRequest is an agent leaving: its leases go back to the queue at
// once instead of at their timeout.
type DrainRequest struct {
	AgentID string `json:"agent_id"`
}

// DrainReply is empty.
type DrainReply struct{}

// WatchRequest opens an agent's stream of pushes.
type WatchRequest struct {
	AgentID string `json:"agent_id"`
}

// Push is one message of the Watch stream: a new configuration, or the
// order to drain.
type Push struct {
	Config *Config `json:"config,omitempty"`
	Drain  bool    `json:"drain,omitempty"`
}

// control is the service's server side.
type control interface {
	Register(context.Context, *RegisterRequest) (*RegisterReply, error)
	Lease(context.Context, *LeaseRequest) (*LeaseReply, error)
	Heartbeat(context.Context, *HeartbeatRequest) (*HeartbeatReply, error)
	Drain(context.Context, *DrainRequest) (*DrainReply, error)
	Watch(*WatchRequest, grpc.ServerStream) error
}

// unary makes the descriptor of one unary method.
func unary[Req, Rep any](name string, call func(control, context.Context, *Req) (*Rep, error)) grpc.MethodDesc {
	full := "/" + serviceName + "/" + name
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(Req)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) { return call(srv.(control), ctx, req.(*Req)) }
		if icpt == nil {
			return h(ctx, in)
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, h)
	}}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*control)(nil),
	Methods: []grpc.MethodDesc{
		unary("Register", control.Register),
		unary("Lease", control.Lease),
		unary("Heartbeat", control.Heartbeat),
		unary("Drain", control.Drain),
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Watch",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(WatchRequest)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			return srv.(control).Watch(in, stream)
		},
	}},
}

// client is the service's client side.
type client struct{ cc *grpc.ClientConn }

func (c client) call(ctx context.Context, method string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.cc.Invoke(ctx, "/"+serviceName+"/"+method, in, out, grpc.CallContentSubtype(codecName))
}

func (c client) watch(ctx context.Context, in *WatchRequest) (grpc.ClientStream, error) {
	s, err := c.cc.NewStream(ctx, &serviceDesc.Streams[0], "/"+serviceName+"/Watch", grpc.CallContentSubtype(codecName))
	if err != nil {
		return nil, err
	}
	if err := s.SendMsg(in); err != nil {
		return nil, err
	}
	return s, s.CloseSend()
}

// Record is one probe's result on the data plane and in the controller's
// output: the probe.Result's fields, plus the cycle, the target's index and
// the agent's vantage.
type Record struct {
	Cycle   uint64        `json:"cycle"`
	Index   uint64        `json:"index"`
	Vantage string        `json:"vantage,omitempty"`
	Result  *probe.Result `json:"result"`
}

// Batch is a numbered group of records from one agent; Seq counts from 1.
type Batch struct {
	Seq     uint64   `json:"seq"`
	Records []Record `json:"records"`
}

// Hello is the controller's first message on a stream: the last batch it
// applied from this agent, so that the agent resends only what follows.
type Hello struct {
	LastAck uint64 `json:"last_ack"`
}

// Ack acknowledges every batch up to Seq.
type Ack struct {
	Seq uint64 `json:"ack"`
}
