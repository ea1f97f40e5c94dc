// Package rollout judges a canary against its baseline on live traffic and
// moves the canary's weight through the steps of a progressive rollout,
// rolling it back at the first breach of its SLO.
//
// The data path reports every finished request of either arm with
// Rollout.Observe (lock-free, no allocation) and reads the canary's share
// with Rollout.Weight. A control goroutine calls Rollout.Tick once per
// sub-window: it rotates the per-arm sliding windows (Monitor) and, once per
// analysis window, compares the arms (Analyze):
//
//   - error rate: a one-sided Agresti–Caffo bound on the difference of the
//     arms' error rates against SLO.MaxErrorRateIncrease, and a Wilson bound
//     on the canary's rate against SLO.MaxErrorRate;
//   - latency of successful requests: percentile differences with
//     block-bootstrap confidence intervals and a block-permutation two-sample
//     KS test, from package compare (the code of `penstock bench compare`),
//     one block of time being a run of sub-windows, so that seconds that move
//     together are not mistaken for independent evidence;
//   - time to first token, likewise, when the arms report it.
//
// No verdict is given before each arm has Analysis.MinRequests requests in
// the window. A step advances when its analysis passes and it has been held
// for Step.Hold; a failed analysis sets the weight to 0 at once. Pause,
// Resume, Promote and Abort are the manual actions. Snapshot and Restore
// carry the state (as JSON) across a reload or an upgrade; a state saved
// under another Definition (Definition.Hash) is not restored.
//
// docs/rollouts.md states what each test assumes and what the simulations
// of this package's tests measured: the false rollback rate of identical
// arms and the smallest effects detected at given traffic levels.
package rollout
