//go:build race

package loadtest

// raceEnabled: the race detector slows the generator several times over,
// so tests of timing precision skip themselves under it.
const raceEnabled = true
