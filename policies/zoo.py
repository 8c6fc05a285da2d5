"""Imports every built-in neural policy so that each registers itself."""

from simab.policies import (  # noqa: F401
    amen,
    dcn,
    deepfm,
    din,
    dnn,
    hmoe,
    lcn,  # noqa: F401
    sim,
    ssim,  # noqa: F401
    star,
)
