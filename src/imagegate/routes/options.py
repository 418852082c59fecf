"""What the upstream routes (gemini, relay) share: reading their options and their upstreams.

``RouteOptions`` gives typed reads of one ``[routes.<name>]`` table: every ``ConfigError`` names
the option as ``routes.<name>.<key>``, and an option marked secret never has its value repeated.
``retry_after_seconds`` reads a ``Retry-After`` header; ``scrub`` takes an API key out of text an
upstream sent, before it goes into an error or a log line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from imagegate.contract import RATIOS, RESOLUTIONS
from imagegate.errors import ConfigError
from imagegate.money import usd_to_micros
from imagegate.routes.base import Capabilities

__all__ = ["MAX_REFERENCES", "REDACTED", "RouteOptions", "retry_after_seconds", "scrub"]

MAX_REFERENCES = 14  # the most reference images any catalogue model takes
REDACTED = "[redacted]"


class RouteOptions:
    """Typed reads of the option table of route ``name``, a ``kind`` route (``"relay"``).

    ``known`` lists the options the route takes, in the order an error lists them; ``type`` is
    always accepted. Raises ``ConfigError`` naming the first unknown option and listing the
    known ones. Every read raises ``ConfigError`` naming its option when the value is unusable.
    """

    def __init__(self, kind: str, name: str, options: Mapping[str, Any],
                 known: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.options = options
        self.known = ("type", *(key for key in known if key != "type"))
        unknown = sorted(set(options) - set(self.known))
        if unknown:
            raise ConfigError(f"unknown option {self.where(unknown[0])}; known: "
                              f"{', '.join(self.known)}")

    def __contains__(self, key: object) -> bool:
        return key in self.options

    def where(self, key: str) -> str:
        """``routes.<name>.<key>``, as errors name an option."""
        return f"routes.{self.name}.{key}"

    def text(self, key: str, default: str | None = None, *, secret: bool = False,
             example: str = "") -> str:
        """The string at ``key`` (or ``default``), stripped; required when ``default`` is None,
        and never blank. ``example`` is offered when it is missing."""
        value = self.options.get(key, default)
        if value is None:
            hint = f' (for example "{example}")' if example else ""
            raise ConfigError(f"{self.where(key)} is required for a {self.kind} route{hint}")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self.where(key)} must be a non-empty string"
                              f"{_got(value, secret)}")
        return value.strip()

    def optional_text(self, key: str, *, secret: bool = False) -> str | None:
        """The string at ``key``, stripped; None when absent or blank (the caller falls back)."""
        value = self.options.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{self.where(key)} must be a string{_got(value, secret)}")
        return value.strip() or None

    def seconds(self, key: str, default: float, *, zero_ok: bool = False) -> float:
        """A finite number of seconds above 0 (0 or more when ``zero_ok``)."""
        value = self.options.get(key, default)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or not (0 <= value if zero_ok else 0 < value):
            floor = "0 or more" if zero_ok else "greater than 0"
            raise ConfigError(f"{self.where(key)} must be a number of seconds {floor}, "
                              f"got {value!r}")
        return float(value)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.options.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.where(key)} must be true or false, got {value!r}")
        return value

    def whole(self, key: str, default: int, low: int, high: int) -> int:
        """A whole number from ``low`` to ``high``, both included."""
        value = self.options.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"{self.where(key)} must be a whole number from {low} to {high}, "
                              f"got {value!r}")
        return value

    def subset(self, key: str, allowed: tuple[str, ...],
               default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """A non-empty list drawn from ``allowed``, in ``allowed``'s order; when absent,
        ``default`` (itself ``allowed`` unless given)."""
        value = self.options.get(key)
        if value is None:
            return allowed if default is None else default
        if not isinstance(value, list) or not value or any(v not in allowed for v in value):
            raise ConfigError(f"{self.where(key)} must be a non-empty list drawn from "
                              f"{', '.join(allowed)}")
        return tuple(v for v in allowed if v in value)

    def cost(self, resolutions: tuple[str, ...]) -> dict[str, int]:
        """The ``cost`` table (resolution = USD per image) in micro-USD: amounts of 0 or more,
        for resolutions of this route only."""
        table = self.options.get("cost", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{self.where('cost')} must be a table of resolution = USD "
                              "per image")
        micros: dict[str, int] = {}
        for res, raw in table.items():
            if res not in resolutions:
                raise ConfigError(f"{self.where(f'cost.{res}')}: not a resolution of this route "
                                  f"({', '.join(resolutions)})")
            micros[res] = self._usd(f"cost.{res}", raw)
        return micros

    def capabilities(self, base: Capabilities, *, min_references: int = 0) -> Capabilities:
        """``base`` as the options ``max_references``, ``resolutions``, ``ratios``,
        ``search_grounding``, ``official`` and ``cost`` change it. A route allowed no reference
        (``max_references = 0``) serves text-to-image only."""
        max_refs = self.whole("max_references", base.max_references, min_references,
                              MAX_REFERENCES)
        resolutions = self.subset("resolutions", RESOLUTIONS, base.resolutions)
        return Capabilities(
            modes=base.modes if max_refs else ("text-to-image",),
            max_references=max_refs,
            resolutions=resolutions,
            ratios=self.subset("ratios", RATIOS, base.ratios),
            search_grounding=self.flag("search_grounding", base.search_grounding),
            official=self.flag("official", base.official),
            cost_micros=self.cost(resolutions),
        )

    def _usd(self, key: str, raw: Any) -> int:
        try:
            if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
                raise ValueError(raw)
            micros = usd_to_micros(str(raw))
        except ValueError as exc:
            raise ConfigError(f"{self.where(key)} must be a USD amount, got {raw!r}") from exc
        if micros < 0:
            raise ConfigError(f"{self.where(key)} must not be negative, got {raw!r}")
        return micros


def _got(value: Any, secret: bool) -> str:
    return "" if secret else f", got {value!r}"


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds, or an HTTP date measured
    from ``now`` (default: the current time). 0 or more; None when absent or unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": no zone given, so no instant to wait for
            return None
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def scrub(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``[redacted]``."""
    return text.replace(secret, REDACTED) if secret else text
