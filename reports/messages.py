"""Every flag and warning text a report can show, in one place so wording stays consistent."""

NO_UNITS = "{arm} has no units"
ONE_UNIT = "{arm} has fewer than 2 units: no variance, no interval"
ZERO_DENOMINATOR = "{arm} has a zero denominator: the ratio is undefined"
ZERO_CONTROL = "control value is zero: relative lift is undefined"
NONPOSITIVE_FOR_LOG = "a value is not positive: the log-scale relative interval is undefined"
ZERO_VARIANCE = "zero variance in both arms: interval collapses to the point estimate"
NO_COVARIATES = "no pre-period covariates in the run: CUPED not applied"
CUPED_NO_COVARIATE = "no pre-period covariate is defined for this metric: CUPED not applied"
CUPED_TOO_FEW = "too few users with a defined metric and covariate: CUPED not applied"
CUPED_NO_VARIANCE = "the pre-period covariate has no variance: CUPED not applied"
CUPED_ARM_TOO_FEW = "{arm} has too few users with a defined metric and covariate: CUPED not applied"
NO_TRUTH = "no truth table: true values unknown"
NO_TRUTH_REAL = "real experiment: no true lift is known (true lift and covered do not apply)"
SRM_FLAGGED = "sample ratio mismatch: p = {p:.2g} < 0.001; lifts may be biased"
SRM_NOT_TESTABLE = "fewer than 2 arms with expected traffic: SRM not testable"
LATENCY_CI = (
    "p99 interval: Woodruff outer interval on the user-clustered CDF (Deng, Knoblich & Lu 2018); "
    "relative CI on the log scale (latency > 0, so it stays above -100%)"
)
GUARDRAIL = (
    "guardrail metric ({direction}): outside the confirmatory multiple-testing family; "
    "adjusted p over the guardrail comparisons only"
)
PERCENTILE_AT_MAX = (
    "{arm} has too few requests for this percentile (it is the sample maximum): no interval"
)
NO_SEQUENTIAL = "sequential test not available for this metric"
