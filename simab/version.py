"""The package version: a leaf module, so that any layer (checkpoints record it) can read
it without importing the ``simab`` package's API."""

__version__ = "0.1.0"
