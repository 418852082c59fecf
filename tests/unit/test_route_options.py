"""Route option tables, Retry-After and key scrubbing (routes/options.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from imagegate.contract import MODES, RATIOS, RESOLUTIONS
from imagegate.errors import ConfigError
from imagegate.routes.base import Capabilities
from imagegate.routes.options import RouteOptions, retry_after_seconds, scrub

KNOWN = ("base_url", "api_key", "model", "poll_seconds", "retries", "official",
         "search_grounding", "max_references", "resolutions", "ratios", "cost")


def opts(**options: Any) -> RouteOptions:
    return RouteOptions("relay", "up", options, KNOWN)


def refusal(options: RouteOptions, read: str, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        getattr(options, read)(*args, **kwargs)
    return str(caught.value)


# The table ------------------------------------------------------------------------------------


def test_unknown_option_is_named_and_the_known_ones_listed() -> None:
    with pytest.raises(ConfigError) as caught:
        opts(base_url="https://a.test", colour="red")
    assert str(caught.value) == (f"unknown option routes.up.colour; known: type, "
                                 f"{', '.join(KNOWN)}")


def test_type_is_always_accepted() -> None:
    assert "type" in opts(type="relay")


def test_membership_and_where() -> None:
    options = opts(model="m")
    assert "model" in options and "api_key" not in options
    assert options.where("cost.1k") == "routes.up.cost.1k"


# Text -----------------------------------------------------------------------------------------


def test_text_is_stripped_and_defaults() -> None:
    assert opts(model="  m1 ").text("model") == "m1"
    assert opts().text("model", "nano-banana-2") == "nano-banana-2"


def test_missing_text_is_required_for_this_kind_of_route() -> None:
    assert refusal(opts(), "text", "base_url") == (
        "routes.up.base_url is required for a relay route")


def test_missing_text_offers_an_example() -> None:
    message = refusal(RouteOptions("gemini", "g", {}, ("model",)), "text", "model",
                      example="gemini-3.1-flash-image-preview")
    assert message == ('routes.g.model is required for a gemini route '
                       '(for example "gemini-3.1-flash-image-preview")')


@pytest.mark.parametrize("value", ["", "   ", 5, ["m"]])
def test_text_must_be_a_non_empty_string(value: Any) -> None:
    message = refusal(opts(model=value), "text", "model")
    assert message.startswith("routes.up.model must be a non-empty string, got ")


@pytest.mark.parametrize("value", [123456789, "   "])
def test_secret_text_is_never_echoed(value: Any) -> None:
    message = refusal(opts(api_key=value), "text", "api_key", secret=True)
    assert message == "routes.up.api_key must be a non-empty string"


def test_optional_text_is_none_when_absent_or_blank() -> None:
    assert opts().optional_text("api_key") is None
    assert opts(api_key="  ").optional_text("api_key") is None
    assert opts(api_key=" k ").optional_text("api_key") == "k"


def test_optional_text_refuses_a_non_string_without_echoing_a_secret() -> None:
    assert refusal(opts(api_key=42), "optional_text", "api_key", secret=True) == (
        "routes.up.api_key must be a string")
    assert refusal(opts(base_url=42), "optional_text", "base_url") == (
        "routes.up.base_url must be a string, got 42")


# Numbers and flags ----------------------------------------------------------------------------


def test_seconds_are_floats_with_a_default() -> None:
    assert opts(poll_seconds=2).seconds("poll_seconds", 3.0) == 2.0
    assert opts().seconds("poll_seconds", 3.0) == 3.0


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), True, "10", None])
def test_seconds_must_be_finite_and_above_zero(value: Any) -> None:
    message = refusal(opts(poll_seconds=value), "seconds", "poll_seconds", 3.0)
    assert message.startswith("routes.up.poll_seconds must be a number of seconds greater than 0")


def test_zero_seconds_only_when_zero_ok() -> None:
    assert opts(poll_seconds=0).seconds("poll_seconds", 3.0, zero_ok=True) == 0.0
    message = refusal(opts(poll_seconds=-0.5), "seconds", "poll_seconds", 3.0, zero_ok=True)
    assert message == "routes.up.poll_seconds must be a number of seconds 0 or more, got -0.5"


def test_flag_defaults_and_refuses_non_booleans() -> None:
    assert opts().flag("official") is False
    assert opts().flag("official", True) is True
    assert opts(official=True).flag("official") is True
    assert refusal(opts(official="yes"), "flag", "official") == (
        "routes.up.official must be true or false, got 'yes'")


def test_whole_number_within_range() -> None:
    assert opts(retries=3).whole("retries", 1, 0, 5) == 3
    assert opts().whole("retries", 1, 0, 5) == 1


@pytest.mark.parametrize("value", [-1, 6, 2.0, True, "3"])
def test_whole_number_outside_range_is_refused(value: Any) -> None:
    message = refusal(opts(retries=value), "whole", "retries", 1, 0, 5)
    assert message == f"routes.up.retries must be a whole number from 0 to 5, got {value!r}"


# Lists ----------------------------------------------------------------------------------------


def test_subset_keeps_the_allowed_order() -> None:
    assert opts(resolutions=["4k", "1k"]).subset("resolutions", RESOLUTIONS) == ("1k", "4k")


def test_absent_subset_is_the_default_else_everything_allowed() -> None:
    assert opts().subset("resolutions", RESOLUTIONS) == RESOLUTIONS
    assert opts().subset("resolutions", RESOLUTIONS, ("1k",)) == ("1k",)


@pytest.mark.parametrize("value", [[], ["8k"], "1k", ["1k", 2]])
def test_subset_must_be_a_non_empty_list_of_allowed_values(value: Any) -> None:
    message = refusal(opts(resolutions=value), "subset", "resolutions", RESOLUTIONS)
    assert message == "routes.up.resolutions must be a non-empty list drawn from 1k, 2k, 4k"


# Cost -----------------------------------------------------------------------------------------


def test_cost_is_micro_usd_per_resolution() -> None:
    options = opts(cost={"1k": "0.04", "2k": 0.07, "4k": 0})
    assert options.cost(RESOLUTIONS) == {"1k": 40_000, "2k": 70_000, "4k": 0}
    assert opts().cost(RESOLUTIONS) == {}


def test_cost_must_be_a_table() -> None:
    assert refusal(opts(cost="0.04"), "cost", RESOLUTIONS) == (
        "routes.up.cost must be a table of resolution = USD per image")


def test_cost_only_for_resolutions_of_the_route() -> None:
    assert refusal(opts(cost={"4k": "0.1"}), "cost", ("1k", "2k")) == (
        "routes.up.cost.4k: not a resolution of this route (1k, 2k)")


@pytest.mark.parametrize("value", ["cheap", True, None, ["0.1"], "0.0000001", "inf"])
def test_cost_must_be_a_usd_amount(value: Any) -> None:
    message = refusal(opts(cost={"1k": value}), "cost", RESOLUTIONS)
    assert message == f"routes.up.cost.1k must be a USD amount, got {value!r}"


def test_cost_must_not_be_negative() -> None:
    assert refusal(opts(cost={"1k": "-0.01"}), "cost", RESOLUTIONS) == (
        "routes.up.cost.1k must not be negative, got '-0.01'")


# Capabilities ---------------------------------------------------------------------------------


def test_capabilities_default_to_the_base() -> None:
    base = Capabilities(max_references=4, resolutions=("1k",), ratios=("1:1",),
                        search_grounding=True, official=True)
    assert opts().capabilities(base) == base


def test_capabilities_options_override_the_base() -> None:
    caps = opts(max_references=2, resolutions=["2k", "1k"], ratios=["16:9", "1:1"],
                search_grounding=True, official=True, cost={"2k": "0.1"}
                ).capabilities(Capabilities())
    assert caps == Capabilities(max_references=2, resolutions=("1k", "2k"),
                                ratios=("1:1", "16:9"), search_grounding=True, official=True,
                                cost_micros={"2k": 100_000})


def test_no_references_makes_the_route_text_to_image_only() -> None:
    caps = opts(max_references=0).capabilities(Capabilities())
    assert caps.modes == ("text-to-image",) and caps.max_references == 0
    assert opts().capabilities(Capabilities()).modes == MODES


def test_capabilities_refuse_too_few_or_too_many_references() -> None:
    assert "from 1 to 14" in refusal(opts(max_references=0), "capabilities", Capabilities(),
                                     min_references=1)
    assert "from 0 to 14" in refusal(opts(max_references=15), "capabilities", Capabilities())


def test_capabilities_price_only_the_configured_resolutions() -> None:
    options = opts(resolutions=["1k"], cost={"4k": "0.2"})
    assert "routes.up.cost.4k" in refusal(options, "capabilities", Capabilities())


def test_capabilities_ratios_are_drawn_from_all_ratios() -> None:
    base = Capabilities(ratios=("1:1",))
    assert opts(ratios=["21:9"]).capabilities(base).ratios == ("21:9",)
    assert opts().capabilities(Capabilities()).ratios == RATIOS


# Retry-After ----------------------------------------------------------------------------------

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    ("7", 7.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0),
    ("Sun, 01 Jun 2025 12:00:30 GMT", 30.0),
    ("Sun, 01 Jun 2025 11:00:00 GMT", 0.0),
    ("Sun, 01 Jun 2025 14:00:10 +0200", 10.0),
])
def test_retry_after_reads_seconds_or_an_http_date(value: str, seconds: float) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "inf", "nan", "1e999",
                                   "Sun, 01 Jun 2025 12:00:30 -0000"])
def test_retry_after_is_none_when_absent_or_unreadable(value: str | None) -> None:
    assert retry_after_seconds(value, now=NOW) is None


def test_retry_after_date_counts_from_the_current_time() -> None:
    waited = retry_after_seconds("Thu, 01 Jan 2099 00:00:00 GMT")
    assert waited is not None and waited > 0


# Scrubbing ------------------------------------------------------------------------------------


def test_scrub_replaces_every_copy_of_the_secret() -> None:
    assert scrub("key sk-1 and sk-1 again", "sk-1") == "key [redacted] and [redacted] again"


def test_scrub_with_no_secret_leaves_the_text_alone() -> None:
    assert scrub("nothing to hide", "") == "nothing to hide"
