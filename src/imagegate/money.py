"""Money rules. Amounts are integer micro-USD (1 USD = 1_000_000); never floating point.

The balance of an account is what it can spend now: a hold at submit takes the task's price
out of it, a refund puts it back, a settle makes the hold final (amount 0). The ledger is
append-only and the sum of an account's ledger amounts is always its balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum

MICROS_PER_USD = 1_000_000
# The most one operator action may move, and the most an account may hold: far below what an
# integer column holds (2**63 micro-USD is about 9.2e12 USD), so no sum can overflow it.
MAX_MOVE_MICROS = 1_000_000_000 * MICROS_PER_USD
MAX_BALANCE_MICROS = 1_000_000_000_000 * MICROS_PER_USD


class LedgerKind:
    CREDIT = "credit"  # operator adds funds (+)
    HOLD = "hold"  # task submitted (-price)
    SETTLE = "settle"  # task succeeded: the hold becomes a charge (0)
    REFUND = "refund"  # task failed or canceled: the hold comes back (+price)


class ChargeState(StrEnum):
    """The money of one task: held at submit, then settled or refunded, once."""

    HELD = "held"
    SETTLED = "settled"
    REFUNDED = "refunded"

    def can_become(self, new: ChargeState) -> bool:
        return self is ChargeState.HELD and new is not ChargeState.HELD

    @staticmethod
    def after(succeeded: bool) -> ChargeState:
        """What a hold becomes when its task ends: settled if it succeeded, else refunded."""
        return ChargeState.SETTLED if succeeded else ChargeState.REFUNDED


def usd_to_micros(amount: str | int | Decimal) -> int:
    """Parse a USD amount exactly ("0.05" -> 50000). Raises ValueError below a micro-dollar."""
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation as exc:
        raise ValueError(f"{amount!r} is not a USD amount") from exc
    if not value.is_finite():
        raise ValueError(f"{amount!r} is not a USD amount")
    micros = value * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError(f"{amount!r} has more precision than one micro-dollar")
    return int(micros)


def micros_to_usd(micros: int) -> float:
    """For the wire only (the balance endpoint's bare number); exact for display to 6 places."""
    return float((Decimal(micros) / MICROS_PER_USD).quantize(Decimal("0.000001"),
                                                             rounding=ROUND_HALF_UP))


def format_usd(micros: int) -> str:
    """A person's view: "$10.00", "$0.050000" when cents would hide a fraction."""
    value = Decimal(micros) / MICROS_PER_USD
    cents = value.quantize(Decimal("0.01"))
    return f"${cents}" if cents == value else f"${value.quantize(Decimal('0.000001'))}"


def task_price(prices: Mapping[str, int], resolution: str, num_images: int) -> int:
    """Price of a task in micro-USD: per image, per resolution."""
    return prices[resolution] * num_images
