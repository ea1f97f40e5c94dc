//go:build !race

package fleet

const raceScale = 1
