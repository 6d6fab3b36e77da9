"""Parsing of the options users send (request params, label info): viewers send strings.

Every parser raises ``UserError`` naming the option, so a wrong value becomes a 4xx answer or
a one-line CLI error.
"""

from __future__ import annotations

from lib.errors import UserError


def parse_bool(value, name: str) -> bool:
    """``True``/``"true"``/``"1"``/``"yes"``/``1`` (any case, spaces ignored) and their opposites."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise UserError(f"option {name!r} must be true or false, got {value!r}")


def parse_slices(value, name: str = "slices") -> list[int] | None:
    """``[3, 7]``, ``"3,7"``, ``"3 7"`` or ``3`` -> sorted unique indices; None when empty."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split() if v]
    try:
        return sorted({int(v) for v in (value if isinstance(value, (list, tuple)) else [value])})
    except (TypeError, ValueError):
        raise UserError(f"option {name!r} must be a list of slice indices, got {value!r}") from None
