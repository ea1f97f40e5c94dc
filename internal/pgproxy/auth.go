package pgproxy

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// errAuthFailed is every failed login, whatever the reason, so a client
// learns nothing about which users exist (SQLSTATE 28P01).
var errAuthFailed = errors.New("password authentication failed")

// scramIterations is the PBKDF2 iteration count for verifiers made from a
// plain password: PostgreSQL's default (scram_iterations).
const scramIterations = 4096

// scramVerifier is a SCRAM-SHA-256 stored password (RFC 5802, RFC 7677).
type scramVerifier struct {
	salt       []byte
	iterations int
	storedKey  []byte
	serverKey  []byte
}

// newVerifier builds the verifier of a configured password: a plain
// password (salted here) or PostgreSQL's stored form
// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>".
func newVerifier(password string) (*scramVerifier, error) {
	if rest, ok := strings.CutPrefix(password, "SCRAM-SHA-256$"); ok {
		iterSalt, keys, ok := strings.Cut(rest, "$")
		iterS, saltS, ok1 := strings.Cut(iterSalt, ":")
		storedS, serverS, ok2 := strings.Cut(keys, ":")
		if !ok || !ok1 || !ok2 {
			return nil, errors.New("malformed SCRAM-SHA-256 verifier")
		}
		iter, err := strconv.Atoi(iterS)
		salt, err1 := base64.StdEncoding.DecodeString(saltS)
		stored, err2 := base64.StdEncoding.DecodeString(storedS)
		server, err3 := base64.StdEncoding.DecodeString(serverS)
		if err != nil || err1 != nil || err2 != nil || err3 != nil || iter < 1 || len(stored) != sha256.Size || len(server) != sha256.Size {
			return nil, errors.New("malformed SCRAM-SHA-256 verifier")
		}
		return &scramVerifier{salt: salt, iterations: iter, storedKey: stored, serverKey: server}, nil
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return nil, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return &scramVerifier{salt: salt, iterations: scramIterations, storedKey: stored[:], serverKey: hmacSHA256(salted, "Server Key")}, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// authConn is what an authentication exchange needs of a client
// connection.
type authConn interface {
	send(pgproto3.BackendMessage) error
	receive() (pgproto3.FrontendMessage, error)
	setAuthType(uint32)
}

// authSCRAM runs SCRAM-SHA-256 (without channel binding) as the server
// (RFC 5802 section 3; PostgreSQL's protocol section 53.3.1).
func authSCRAM(c authConn, v *scramVerifier) error {
	c.setAuthType(pgproto3.AuthTypeSASL)
	if err := c.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}); err != nil {
		return err
	}
	msg, err := c.receive()
	if err != nil {
		return err
	}
	first, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok || first.AuthMechanism != "SCRAM-SHA-256" {
		return errAuthFailed
	}
	// client-first-message = gs2-header client-first-message-bare; the
	// gs2 header is "n,," or "y,," (no channel binding used).
	cfm := string(first.Data)
	var bare string
	switch {
	case strings.HasPrefix(cfm, "n,,"), strings.HasPrefix(cfm, "y,,"):
		bare = cfm[3:]
	default:
		return errAuthFailed
	}
	clientNonce := ""
	for _, attr := range strings.Split(bare, ",") {
		if v, ok := strings.CutPrefix(attr, "r="); ok {
			clientNonce = v
		}
	}
	if clientNonce == "" {
		return errAuthFailed
	}
	nonceBytes := make([]byte, 18)
	rand.Read(nonceBytes)
	nonce := clientNonce + base64.StdEncoding.EncodeToString(nonceBytes)
	sfm := "r=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(v.salt) + ",i=" + strconv.Itoa(v.iterations)
	c.setAuthType(pgproto3.AuthTypeSASLContinue)
	if err := c.send(&pgproto3.AuthenticationSASLContinue{Data: []byte(sfm)}); err != nil {
		return err
	}
	msg, err = c.receive()
	if err != nil {
		return err
	}
	final, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return errAuthFailed
	}
	cf := string(final.Data)
	withoutProof, proofS, ok := strings.Cut(cf, ",p=")
	if !ok || !strings.Contains(withoutProof, "r="+nonce) {
		return errAuthFailed
	}
	proof, err := base64.StdEncoding.DecodeString(proofS)
	if err != nil || len(proof) != sha256.Size {
		return errAuthFailed
	}
	authMessage := bare + "," + sfm + "," + withoutProof
	sig := hmacSHA256(v.storedKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	for i := range clientKey {
		clientKey[i] = proof[i] ^ sig[i]
	}
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], v.storedKey) != 1 {
		return errAuthFailed
	}
	serverSig := hmacSHA256(v.serverKey, authMessage)
	c.setAuthType(pgproto3.AuthTypeSASLFinal)
	return c.send(&pgproto3.AuthenticationSASLFinal{Data: []byte("v=" + base64.StdEncoding.EncodeToString(serverSig))})
}

// md5Hash is PostgreSQL's stored md5 password: "md5" + md5(password+user).
func md5Hash(password, user string) string {
	if len(password) == 35 && strings.HasPrefix(password, "md5") {
		return password
	}
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

// authMD5 runs the md5 password exchange: the client sends
// "md5" + md5(md5(password+user) + salt).
func authMD5(c authConn, user, password string) error {
	var salt [4]byte
	rand.Read(salt[:])
	c.setAuthType(pgproto3.AuthTypeMD5Password)
	if err := c.send(&pgproto3.AuthenticationMD5Password{Salt: salt}); err != nil {
		return err
	}
	msg, err := c.receive()
	if err != nil {
		return err
	}
	pm, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return errAuthFailed
	}
	stored := md5Hash(password, user)
	sum := md5.Sum(append([]byte(stored[3:]), salt[:]...))
	want := "md5" + hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(want), []byte(pm.Password)) != 1 {
		return errAuthFailed
	}
	return nil
}

// userAuth is one configured user, ready to check logins.
type userAuth struct {
	name     string
	password string // as configured: plain, md5 hash or SCRAM verifier
	scram    *scramVerifier
}

func newUserAuth(name, password, authType string) (*userAuth, error) {
	u := &userAuth{name: name, password: password}
	if authType == "scram-sha-256" && password != "" {
		v, err := newVerifier(password)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", name, err)
		}
		u.scram = v
	}
	return u, nil
}

// plain returns the password when it is a plain one (usable to log in to
// a server), else "".
func (u *userAuth) plain() string {
	if strings.HasPrefix(u.password, "SCRAM-SHA-256$") || (len(u.password) == 35 && strings.HasPrefix(u.password, "md5")) {
		return ""
	}
	return u.password
}
