//go:build !race

package server_test

// slowdown is how much slower code runs in this build: 1 without the race
// detector.
const slowdown = 1

// raceDetector is off in this build.
const raceDetector = false
