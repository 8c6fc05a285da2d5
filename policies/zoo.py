"""Imports every built-in neural policy so that each registers itself."""

from simab.policies import dcn, deepfm, din, dnn, hmoe, sim, star  # noqa: F401
