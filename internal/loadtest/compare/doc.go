// Package compare decides whether two `penstock bench` runs differ, from
// their run logs (package runlog), and by how much.
//
// # What it reports
//
// For one phase (Total by default) it reports P50, P90, P99, P99.9 and the
// mean of each run, the difference B − A, and a confidence interval for that
// difference; and a two-sample Kolmogorov–Smirnov test of "A and B come from
// the same latency distribution": the statistic D (the largest vertical gap
// between the two empirical distribution functions) and a p-value.
//
// Everything is computed from the HdrHistogram buckets of the run log (values
// to 3 significant digits), never from raw samples: a percentile is the upper
// end of the bucket holding its rank (as HdrHistogram's ValueAtQuantile), the
// mean weights each bucket's midpoint, and the empirical distribution
// functions step at bucket upper ends. Both runs share the buckets, so D is
// exact for the bucketed data and within one bucket's mass of D on the raw
// samples.
//
// # Why the samples are resampled in blocks of time
//
// Requests within a run are not independent. A garbage-collection pause, a
// noisy neighbour or a cache flush moves every request of a second (or of
// several seconds) together. The classical KS p-value assumes n independent
// samples; with 100 000 requests per run it flags any two runs as different,
// even two runs of the same build on the same machine, because it mistakes the
// slow drift between seconds for evidence. Likewise an i.i.d. bootstrap of the
// requests gives confidence intervals that are far too narrow.
//
// The run log already holds the natural unit of dependence: one histogram per
// interval (one second). This package keeps whole stretches of consecutive
// intervals together and resamples those blocks, never single requests, which
// preserves the dependence inside a block (Künsch 1989, "The jackknife and the
// bootstrap for general stationary observations", Ann. Statist. 17(3);
// Politis & Romano 1992, "A circular block-resampling procedure for stationary
// data"; Politis & Romano 1994, "The stationary bootstrap", JASA 89(428)).
//
// Block length. Options.BlockLen sets the number of intervals per block. By
// default it is chosen from the data: at least ⌈√n⌉ intervals (n the length
// of the shorter run), and at least twice the lag after which the
// autocorrelation of the per-interval series "fraction of requests below the
// pooled median" stops being significant (the lag search of Politis & White
// 2004, "Automatic block-length selection for the dependent bootstrap",
// Econometric Reviews 23(1)), but never so long that a run has fewer than
// four blocks.
//
// The KS p-value is a permutation test over blocks. Each run is cut into
// consecutive blocks; under the null hypothesis that both runs come from the
// same stationary process, the blocks of A and B are exchangeable. The blocks
// of both runs are pooled and dealt into a group of A's size and a group of
// B's size (in blocks), and D is computed for each deal. The p-value is the
// share of deals whose D is at least the observed D. When there are no more
// distinct deals than Options.Resamples, every deal is tried (an exact
// test); otherwise Options.Resamples deals are drawn at random and the
// observed deal counts as one of them: (1 + #{D* ≥ D}) / (1 + R).
// The smallest p-value a comparison can reach is therefore bounded by the
// number of distinct deals, which is small when the runs are short (Result
// notes when it cannot reach the significance level).
//
// The confidence intervals come from a circular block bootstrap of each run
// separately (Politis & Romano 1992): a resampled run is built from blocks of
// BlockLen consecutive intervals starting at uniformly random intervals
// (wrapping around the end) until it is as long as the original; the
// statistic's difference B* − A* is computed for each of Options.Resamples
// resamples, and the interval is the percentile interval of those
// differences at Options.Confidence.
//
// The classical (i.i.d., asymptotic) KS p-value is reported alongside, for
// contrast and for data that really is independent; do not use it to judge
// two load-test runs.
//
// Results are deterministic: the same inputs, options and Options.Seed give
// the same numbers.
package compare
