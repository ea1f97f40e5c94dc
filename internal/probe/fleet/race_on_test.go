//go:build race

package fleet

// raceScale divides the target count of TestAgentKilledMidCycle under the
// race detector, which slows the probes several times; scripts/test runs
// the full 30,000 without it.
const raceScale = 10
