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


def pydantic_to_simab(exc, source: str | None, prefix: str = "", model: type | None = None) -> SimabError:
    """Turn the first error of a pydantic ``ValidationError`` into a one-line SimabError.

    The key names the full path (``arms.treatment.share``), never a model class; with
    ``model`` (the validated class) an unknown key's message lists the allowed keys."""
    err = exc.errors()[0]
    loc_parts = [p for p in err.get("loc", ()) if p not in ("__root__",)]
    loc = ".".join(str(p) for p in loc_parts)
    key = ".".join(p for p in (prefix, loc) if p)
    typ = err.get("type", "")
    if typ == "extra_forbidden":
        allowed = _allowed_keys(model, loc_parts[:-1]) if model is not None else None
        msg = "unknown key" + (_allowed_text(str(loc_parts[-1]) if loc_parts else "", allowed) if allowed else "")
    elif typ == "missing":
        msg = "required key is missing"
    else:
        ctx_error = (err.get("ctx") or {}).get("error")
        if typ == "value_error" and ctx_error is not None:
            msg = str(ctx_error)  # the validator's own words, without pydantic's "Value error, "
        else:
            msg = err.get("msg", "invalid value")
            if "input" in err and not isinstance(err["input"], dict):
                got = repr(err["input"])
                msg += f" (got {got if len(got) <= 60 else got[:57] + '...'})"
    return SimabError(msg, source=source, key=key or None)


def _allowed_text(bad: str, allowed: list[str]) -> str:
    """All allowed keys when they are few; else the closest ones (the line stays short)."""
    import difflib

    if len(allowed) <= 12:
        return f"; allowed: {', '.join(allowed)}"
    close = difflib.get_close_matches(bad, allowed, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"; {hint}({len(allowed)} keys allowed, e.g. {', '.join(allowed[:6])}, ...)"


def _allowed_keys(model: type, path: list) -> list[str] | None:
    """Field names of the (nested) model reached by following ``path`` from ``model``
    (through ``dict[str, Model]`` fields, whose next path part is a name such as an arm)."""
    import typing

    from pydantic import BaseModel

    def is_model(x: object) -> bool:
        return isinstance(x, type) and issubclass(x, BaseModel)

    node: object = model
    parts = list(path)
    while parts:
        if not is_model(node):
            return None
        field = node.model_fields.get(str(parts.pop(0)))
        if field is None:
            return None
        ann = field.annotation
        args = typing.get_args(ann)
        if typing.get_origin(ann) in (dict, list) and args:
            node = args[-1]
            if not parts:
                return None  # the error is about a name or index in the container itself
            parts.pop(0)  # the name (arm, scenario) or list index inside the container
        else:
            node = next((a for a in args if is_model(a)), ann)
    return sorted(node.model_fields) if is_model(node) else None
