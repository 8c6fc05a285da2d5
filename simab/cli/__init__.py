"""The ``simab`` command line: the entry point and dispatcher (``main``), the argument
helpers (``args``) and one module per command that needs more than a few lines."""
