package grpccall

// Status codes of gRPC (grpc/grpc doc/statuscodes.md). penstock sends the
// ones its own refusals map to (internal/failure) and reads any the
// upstream sends.
const (
	OK                 = 0
	Canceled           = 1
	Unknown            = 2
	InvalidArgument    = 3
	DeadlineExceeded   = 4
	NotFound           = 5
	AlreadyExists      = 6
	PermissionDenied   = 7
	ResourceExhausted  = 8
	FailedPrecondition = 9
	Aborted            = 10
	OutOfRange         = 11
	Unimplemented      = 12
	Internal           = 13
	Unavailable        = 14
	DataLoss           = 15
	Unauthenticated    = 16
)

// statusText holds the status codes' decimal forms, so that writing one
// allocates nothing.
var statusText = [...]string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"}

// StatusString returns code in decimal, as the grpc-status field carries it.
func StatusString(code int) string {
	if code >= 0 && code < len(statusText) {
		return statusText[code]
	}
	return "2" // Unknown
}

// ParseStatus reads a grpc-status value: a decimal status code. ok is
// false for anything else (an empty or over-long value, a sign, a space).
func ParseStatus(s string) (code int, ok bool) {
	if len(s) == 0 || len(s) > 3 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	return code, true
}

// AppendMessage appends msg to b as a grpc-message value: the bytes that
// are not printable ASCII, and '%', percent-encoded (PROTOCOL-HTTP2.md,
// "Status-Message").
func AppendMessage(b []byte, msg string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}
