package upstream

// Ways into upstream protection for the tests, each with the test's own
// clock (Unix nanoseconds).

// ObserveCheck records one active health check result of e at now.
func ObserveCheck(p *Pool, e *Endpoint, passed bool, now int64) {
	p.observeCheck(e, CheckResult{Passed: passed}, now)
}

// OutlierInterval ends an outlier detection interval at now.
func OutlierInterval(p *Pool, now int64) { p.outlierInterval(now) }

// EndpointProtection is e's protection state at now.
func EndpointProtection(e *Endpoint, now int64) *ProtectionState { return e.protectionState(now) }

// MaxEjected is maxEjected.
var MaxEjected = maxEjected
