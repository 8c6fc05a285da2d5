import numpy as np

from simab.reports.latency import percentile_estimate


def test_clustered_percentile_se_matches_user_bootstrap():
    # Requests of a user share a user-level slowdown, so a user bootstrap is the reference.
    rng = np.random.default_rng(13)
    users = 800
    per_user = rng.poisson(8, users) + 1
    user = np.repeat(np.arange(users), per_user)
    latency = rng.gamma(4, 5, user.size) * np.exp(rng.normal(0, 0.4, users))[user]
    est = percentile_estimate("a", latency, user, q=0.9)
    starts = np.concatenate([[0], np.cumsum(per_user)[:-1]])
    boot = []
    for _ in range(300):
        pick = rng.integers(0, users, users)
        idx = np.concatenate([np.arange(starts[u], starts[u] + per_user[u]) for u in pick])
        boot.append(np.quantile(latency[idx], 0.9))
    ratio = np.sqrt(est.var) / np.std(boot)
    assert 0.75 < ratio < 1.33  # 300 replicates: the bootstrap sd itself is ±~8 %
