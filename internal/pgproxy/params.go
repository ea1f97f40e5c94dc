package pgproxy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// param is one startup parameter of a client that the proxy replays on
// the server connections it uses (postgres.track_parameters).
type param struct {
	// key is the name in lower case (settings' names are
	// case-insensitive); value is as the client sent it.
	key, value string
}

// trackedParams returns the client's startup parameters that tracked
// (lower-case names) lists, sorted by name.
func trackedParams(startup map[string]string, tracked map[string]bool) []param {
	var ps []param
	for k, v := range startup {
		if lk := strings.ToLower(k); tracked[lk] {
			ps = append(ps, param{key: lk, value: v})
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].key < ps[j].key })
	return ps
}

// sentParam reports whether the client sent the tracked parameter key.
func (c *client) sentParam(key string) bool {
	for _, p := range c.params {
		if p.key == key {
			return true
		}
	}
	return false
}

// setConfig sets one setting for the session, taking the value as the
// startup packet does (a list such as search_path is not quoted as one
// name, as SET 'a, b' would).
const setConfig = "SELECT pg_catalog.set_config($1, $2, false)"

// paramError is a client's parameter value the server refused, with the
// server's answer.
type paramError struct{ resp *pgproto3.ErrorResponse }

func (e *paramError) Error() string {
	return "server refused a startup parameter: " + e.resp.Message
}

// syncParams makes sc's tracked settings the client's: each parameter the
// client sent and sc does not have is set, and each one set on sc for
// another client that this client did not send is reset to the server's
// default. Nothing is sent when they agree already (the common case: one
// application's clients send the same values). It runs while the client
// holds sc, before it becomes sc's sink, and waits for the answers
// (exchange).
func (c *client) syncParams(sc *serverConn) error {
	if len(c.params) == 0 && len(sc.applied) == 0 {
		return nil
	}
	// This runs at every attach: it allocates only when something is to
	// be sent.
	var sets []param
	for _, p := range c.params {
		// What the server reports is the truth (a client may have set
		// it since); else what the proxy set.
		cur, ok := sc.reported(p.key)
		if !ok {
			cur, ok = sc.applied[p.key]
		}
		if !ok || cur != p.value {
			sets = append(sets, p)
		}
	}
	var resets []string
	for k := range sc.applied {
		if !c.sentParam(k) {
			resets = append(resets, k)
		}
	}
	if len(sets) == 0 && len(resets) == 0 {
		return nil
	}
	sort.Strings(resets)
	var msgs []pgproto3.FrontendMessage
	ready := 0
	if len(sets) > 0 {
		msgs = append(msgs, &pgproto3.Parse{Query: setConfig})
		for _, p := range sets {
			msgs = append(msgs, &pgproto3.Bind{Parameters: [][]byte{[]byte(p.key), []byte(p.value)}}, &pgproto3.Execute{})
		}
		msgs = append(msgs, &pgproto3.Sync{})
		ready++
	}
	if len(resets) > 0 {
		var q strings.Builder
		for _, k := range resets {
			// Names come from postgres.track_parameters, validated.
			fmt.Fprintf(&q, "RESET %q;", k)
		}
		msgs = append(msgs, &pgproto3.Query{String: q.String()})
		ready++
	}
	failed, err := sc.exchange(msgs, ready, c.rt.cfg.Timeouts.Connect.D())
	if err != nil {
		return err
	}
	if failed != nil {
		// Which ones took is unknown: the connection is not reused.
		return &paramError{failed}
	}
	if sc.applied == nil {
		sc.applied = make(map[string]string)
	}
	for _, p := range sets {
		sc.applied[p.key] = p.value
	}
	for _, k := range resets {
		delete(sc.applied, k)
	}
	return nil
}

// noteReported records a setting the server reported while a client used
// sc: when it is tracked and not what the proxy set, it is marked applied,
// so the next client that did not ask for it gets the default back.
func (sc *serverConn) noteReported(m *pgproto3.ParameterStatus, tracked map[string]bool) {
	sc.params[m.Name] = m.Value
	lk := strings.ToLower(m.Name)
	if !tracked[lk] {
		return
	}
	if v, ok := sc.applied[lk]; !ok || v != m.Value {
		if sc.applied == nil {
			sc.applied = make(map[string]string)
		}
		sc.applied[lk] = m.Value
	}
}

// reported returns the value the server last reported (ParameterStatus)
// for the setting named key in lower case.
func (sc *serverConn) reported(key string) (string, bool) {
	for k, v := range sc.params {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}
