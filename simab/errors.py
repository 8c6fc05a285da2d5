"""User-facing errors.

Every error a user can cause (bad spec, missing file, unknown policy, ...) is a
:class:`SimabError`.  The CLI prints it as one line,
``error: <file>: <key path>: <problem and what is allowed>``, and exits with status 2.
Bugs are not SimabErrors: they raise normally and show a traceback.
"""

from __future__ import annotations


class SimabError(Exception):
    """An error the user can act on.

    Parameters
    ----------
    message:
        What was wrong and what is allowed.
    source:
        The file (or ``"<cli>"``, ``"<default campaign>"``) the problem came from.
    key:
        Dotted key path inside that source, e.g. ``arms.treatment.share``.
    """

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.message = message
        self.source = source
        self.key = key
        super().__init__(self.one_line())

    def __reduce__(self):
        # rebuilt from its parts, so one raised in a worker process reads the same here
        return (_rebuild, (type(self), self.message, self.source, self.key))

    def one_line(self) -> str:
        parts = ["error"]
        if self.source:
            parts.append(str(self.source))
        if self.key:
            parts.append(self.key)
        parts.append(self.message)
        return ": ".join(parts)


def _rebuild(cls: type[SimabError], message: str, source: str | None, key: str | None) -> SimabError:
    return cls(message, source=source, key=key)


def pydantic_to_simab(exc, source: str | None, prefix: str = "") -> SimabError:
    """Turn the first error of a pydantic ``ValidationError`` into a one-line SimabError."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("__root__",))
    key = ".".join(p for p in (prefix, loc) if p)
    typ = err.get("type", "")
    if typ == "extra_forbidden":
        model = getattr(exc, "title", "")
        msg = f"unknown key{f' in {model}' if model else ''}"
    elif typ == "missing":
        msg = "required key is missing"
    else:
        msg = err.get("msg", "invalid value")
        if "input" in err and not isinstance(err["input"], dict):
            msg += f" (got {err['input']!r})"
    return SimabError(msg, source=source, key=key or None)
