// Package ticketkeys reads TLS session ticket key files: the keys a fleet
// of penstock processes share so that a session resumed on any of them, or
// after a restart, skips the full handshake.
package ticketkeys

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Size is the size of one session ticket key in bytes (what
// tls.Config.SetSessionTicketKeys takes).
const Size = 32

// maxKeys bounds the keys a file may hold: each one is tried on every
// resumption that the first key cannot decrypt.
const maxKeys = 64

// Parse parses a session ticket key file. Two formats are read:
//
//   - text (every byte printable ASCII or white space): one key per line,
//     32 bytes in base64 (standard or URL alphabet, padding optional);
//     blank lines and lines starting with '#' are ignored;
//   - binary (anything else): the concatenation of 32-byte keys, so the
//     length must be a multiple of 32.
//
// The first key encrypts new tickets; every key decrypts. A file holds 1 to
// 64 keys.
func Parse(b []byte) ([][Size]byte, error) {
	var keys [][Size]byte
	if isText(b) {
		for n, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || line[0] == '#' {
				continue
			}
			raw, err := decodeBase64(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: not base64: %w", n+1, err)
			}
			if len(raw) != Size {
				return nil, fmt.Errorf("line %d: key is %d bytes, want %d", n+1, len(raw), Size)
			}
			keys = append(keys, [Size]byte(raw))
		}
	} else {
		if len(b)%Size != 0 {
			return nil, fmt.Errorf("binary key file is %d bytes, not a multiple of %d", len(b), Size)
		}
		for i := 0; i+Size <= len(b); i += Size {
			keys = append(keys, [Size]byte(b[i:i+Size]))
		}
	}
	switch {
	case len(keys) == 0:
		return nil, errors.New("no keys")
	case len(keys) > maxKeys:
		return nil, fmt.Errorf("%d keys, at most %d", len(keys), maxKeys)
	}
	return keys, nil
}

func isText(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' && c != ' ' {
			return false
		}
	}
	return true
}

// decodeBase64 accepts the standard and URL alphabets, padded or not.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
