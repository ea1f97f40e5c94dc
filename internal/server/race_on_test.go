//go:build race

package server_test

// slowdown is how much slower code runs in this build: the race detector
// multiplies CPU time several fold, which loose latency bounds allow for.
const slowdown = 5

// raceDetector is on in this build.
const raceDetector = true
