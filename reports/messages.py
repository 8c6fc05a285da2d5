"""Every flag and warning text a report can show, in one place so wording stays consistent."""

NO_UNITS = "{arm} has no units"
ONE_UNIT = "{arm} has fewer than 2 units: no variance, no interval"
ZERO_DENOMINATOR = "{arm} has a zero denominator: the ratio is undefined"
ZERO_CONTROL = "control value is zero: relative lift is undefined"
NONPOSITIVE_FOR_LOG = "a value is not positive: the log-scale relative interval is undefined"
ZERO_VARIANCE = "zero variance in both arms: interval collapses to the point estimate"
NO_COVARIATES = "no pre-period covariates for this metric: CUPED not applied"
NO_TRUTH = "no truth table: true values unknown"
SRM_FLAGGED = "sample ratio mismatch: p = {p:.2g} < 0.001; lifts may be biased"
SRM_NOT_TESTABLE = "fewer than 2 arms with expected traffic: SRM not testable"
LATENCY_CI = (
    "p99 interval: Woodruff outer interval on the user-clustered CDF (Deng, Knoblich & Lu 2018)"
)
NO_SEQUENTIAL = "sequential test not available for this metric"
