//go:build race

package accesslog

// raceEnabled is set under the race detector, which makes sync.Pool drop
// items at random and so allocate.
const raceEnabled = true
