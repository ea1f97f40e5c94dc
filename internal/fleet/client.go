package fleet

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// DefaultDialTimeout bounds a connection attempt and each request to etcd:
// long enough for a member across a data centre, short enough that a node
// starting while etcd is down falls back to its cache in seconds.
const DefaultDialTimeout = 2 * time.Second

// Dial returns a client for t's endpoints. It does not wait for a
// connection: requests made while etcd is unreachable fail after their
// context's deadline, and the client keeps reconnecting in the background.
func Dial(t Target, timeout time.Duration) (*clientv3.Client, error) {
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   t.Endpoints,
		DialTimeout: timeout,
		// A dead member is noticed by keepalive pings rather than only
		// when the next request times out.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: timeout,
		// The client's own log would repeat every retry while etcd is
		// down; penstock reports connection state once, in its own log.
		Logger: zap.NewNop(),
		// gRPC's own reconnection backoff grows to 120 s: after an outage
		// of half a minute a node would wait about as long again before
		// trying etcd. Capped at 2 s, a node is back within seconds.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: timeout,
		})},
		MaxCallSendMsgSize: maxDocument,
		MaxCallRecvMsgSize: 2 * maxDocument,
	})
}

// maxDocument is the largest configuration accepted: etcd's own default
// request limit is 1.5 MiB.
const maxDocument = 3 << 19
