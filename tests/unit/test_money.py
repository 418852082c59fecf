"""Money is integer micro-USD, parsed exactly (money.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from imagegate.money import MICROS_PER_USD, format_usd, micros_to_usd, task_price, usd_to_micros

PRICES = {"1k": 50_000, "2k": 80_000, "4k": 120_000}


@pytest.mark.parametrize(("amount", "micros"), [
    ("0.05", 50_000),
    ("0.08", 80_000),
    ("0.12", 120_000),
    ("10", 10_000_000),
    ("10.00", 10_000_000),
    ("0", 0),
    ("0.000001", 1),
    ("1e-6", 1),
    ("123456.789012", 123_456_789_012),
    (" 0.05 ", 50_000),
    (10, 10_000_000),
    (0, 0),
    (Decimal("0.05"), 50_000),
    (Decimal("0.1"), 100_000),
])
def test_usd_to_micros_is_exact(amount: str | int | Decimal, micros: int) -> None:
    result = usd_to_micros(amount)
    assert result == micros
    assert type(result) is int


def test_usd_to_micros_does_not_inherit_binary_float_error() -> None:
    # 0.1 + 0.2 in floats is 0.30000000000000004; the string path must be exact.
    assert usd_to_micros("0.3") == usd_to_micros("0.1") + usd_to_micros("0.2") == 300_000


def test_one_usd_is_a_million_micros() -> None:
    assert MICROS_PER_USD == 1_000_000


@pytest.mark.parametrize("amount", ["0.0000001", "0.0000015", "1.0000005", "1e-7"])
def test_usd_to_micros_refuses_amounts_finer_than_a_micro_dollar(amount: str) -> None:
    with pytest.raises(ValueError, match="precision"):
        usd_to_micros(amount)


@pytest.mark.parametrize("amount", ["abc", "", "  ", "1,5", "$1", "0x10", "nan", "NaN", "inf",
                                    "-inf", "Infinity", "sNaN"])
def test_usd_to_micros_refuses_what_is_not_a_finite_amount(amount: str) -> None:
    with pytest.raises(ValueError):
        usd_to_micros(amount)


@pytest.mark.parametrize(("micros", "usd"), [
    (50_000, 0.05),
    (10_000_000, 10.0),
    (1, 0.000001),
    (0, 0.0),
    (120_000, 0.12),
    (9_999_999_999, 9999.999999),
])
def test_micros_to_usd_gives_the_wire_number(micros: int, usd: float) -> None:
    assert micros_to_usd(micros) == usd
    assert isinstance(micros_to_usd(micros), float)


@pytest.mark.parametrize("amount", ["0.05", "10", "0.000001", "7.123456", "99999.99"])
def test_micros_round_trip_through_the_wire_number(amount: str) -> None:
    micros = usd_to_micros(amount)
    assert usd_to_micros(repr(micros_to_usd(micros))) == micros


@pytest.mark.parametrize(("micros", "text"), [
    (10_000_000, "$10.00"),
    (50_000, "$0.05"),
    (0, "$0.00"),
    (1_230_000, "$1.23"),
    (1, "$0.000001"),
    (50_001, "$0.050001"),
    (123_456, "$0.123456"),
    (100_000_000_000, "$100000.00"),
])
def test_format_usd_shows_cents_unless_that_would_hide_a_fraction(micros: int,
                                                                  text: str) -> None:
    assert format_usd(micros) == text


@pytest.mark.parametrize(("resolution", "num_images", "price"), [
    ("1k", 1, 50_000),
    ("2k", 1, 80_000),
    ("4k", 1, 120_000),
    ("1k", 4, 200_000),
    ("2k", 3, 240_000),
    ("4k", 4, 480_000),
])
def test_task_price_is_per_image_per_resolution(resolution: str, num_images: int,
                                                price: int) -> None:
    assert task_price(PRICES, resolution, num_images) == price


def test_task_price_for_an_unpriced_resolution_raises() -> None:
    with pytest.raises(KeyError):
        task_price({"1k": 50_000}, "4k", 1)
