"""Settings shared by the whole suite.

Property-based tests (hypothesis) draw their examples from a fixed seed in the default run
(`make test`, CI): the same examples on every machine, so a run's verdict does not depend on
which random examples it drew.  `make test-slow` sets ``HYPOTHESIS_PROFILE=explore``: fresh
random examples on every run, to find what the fixed ones miss (a failure found there
becomes an ``@example`` of its test).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("fixed", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fixed"))
