package exchange

// Trailer fields (RFC 9110 §6.5) travel after a message's content: gRPC puts
// its call status there (grpc-status, grpc-message), so a proxy that drops
// them turns every gRPC call into an error. Both directions are optional
// parts of the contract, asked for with a type assertion or a nil check, so
// a request or response without trailers costs nothing.

// TrailerWriter is implemented by ResponseWriters of engines that can send
// trailer fields after the response body: HTTP/2 and HTTP/3 always (a
// HEADERS frame after the DATA frames), HTTP/1.1 only on a chunked response
// to a client that sent "TE: trailers" (RFC 9112 §7.1.2; the engine makes
// the response chunked then). Fields added to the returned header before
// the handler returns are sent once it has; on a connection that cannot
// carry them they are dropped, as RFC 9110 §6.5.1 allows.
type TrailerWriter interface {
	// Trailer returns the response's trailer fields, empty at first.
	Trailer() *Header
}

// TrailerReader is what an engine puts in Request.Trailer when the
// client's protocol can carry request trailers. ReadTrailer appends the
// trailer fields that arrived with the request body to dst; it is meant to
// be called once the body has returned io.EOF, before the handler returns
// (earlier it appends nothing).
type TrailerReader interface {
	ReadTrailer(dst *Header)
}
