"""The Python client of imagegate's task API (and of any APIXO-style one)."""

from __future__ import annotations

__all__: list[str] = []
__version__ = "0.1.0"
