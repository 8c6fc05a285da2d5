"""Off-policy evaluation: logs served by a known logger (``logs``), their marginal
propensities (``marginal``) and the estimators with their intervals (``estimators``)."""
