// Package fleet runs penstock as a fleet whose configuration lives in etcd.
//
// The whole YAML document is one key, PREFIX/config. A node (penstock serve
// --config-source etcd://HOST:PORT/PREFIX) reads it at start, watches it,
// and hands every new revision to the same reload path as a file change:
// decoded strictly, validated, compiled and swapped, or refused while the
// last good revision keeps serving. After each good apply the document is
// written to a cache file, so a node restarted while etcd is unreachable
// starts from it; while serving, a node keeps its configuration through an
// etcd outage and catches up when etcd is back (the watch resumes from its
// revision, and a periodic read catches whatever a watch could miss).
//
// Each node registers PREFIX/nodes/<node-id>, bound to a lease, holding the
// revision it serves: `penstock config nodes` shows whether the fleet has
// converged, and a node that dies leaves the list when its lease expires.
//
// Writers (`penstock config push`, `rollback`) compare and swap on the key's
// modification revision, so two operators cannot overwrite each other; etcd's
// own history (until compaction) is the configuration's history.
//
// etcd is never on the request path: the watch runs on its own goroutine and
// only ever swaps the gateway's snapshot like a reload does.
package fleet
