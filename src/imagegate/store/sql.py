"""The narrow seam every SQL store's transactions run over: a connection that runs statements by
name (``Tx``), and the dialect that names them.

The money and queue rules are written once, in ``transactions.py``, as plain functions of a
``Tx``. A store adapter supplies a connection, a way to run a function in one transaction, and a
``Dialect``: its statements (``statements.py``), how it passes a list of values, and its
migrations. So a second database means a second set of statements and a connection, never a
second copy of the rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Dialect", "Result", "Row", "Tx"]

Row = Mapping[str, Any]


class Result(Protocol):
    """What one statement gave: rows (for SELECT and RETURNING) and how many rows it changed
    (for UPDATE, INSERT and DELETE without RETURNING)."""

    @property
    def rowcount(self) -> int: ...

    def one(self) -> Row | None: ...

    def all(self) -> list[Row]: ...


class Tx(Protocol):
    """One open transaction. ``run`` executes the dialect's statement ``name`` with positional
    ``params`` (or named ones, for the statements written with names); ``many`` executes it
    once for each set of parameters (no rows come back); ``array`` makes the
    parameter a statement reads as a list of text values; ``script`` runs several
    ``;``-separated statements (migrations only)."""

    dialect: Dialect

    def run(self, name: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Result: ...

    def many(self, name: str, params: Sequence[Sequence[Any]]) -> None: ...

    def array(self, values: Sequence[str]) -> Any: ...

    def script(self, sql: str) -> None: ...


@dataclass(frozen=True)
class Dialect:
    """A database's statements by name, and its migrations by version (one version history
    shared by every dialect: version N means the same schema everywhere)."""

    name: str
    statements: Mapping[str, str]
    migrations: Sequence[tuple[int, str]]

    def statement(self, name: str) -> str:
        try:
            return self.statements[name]
        except KeyError:
            raise KeyError(f"the {self.name} dialect has no statement {name!r}") from None

    @property
    def latest(self) -> int:
        return max(version for version, _ in self.migrations)
