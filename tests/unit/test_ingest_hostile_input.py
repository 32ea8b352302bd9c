"""Hostile or odd input through the whole ingest path (adapter -> normalize -> brand tagging): each case has
a defined outcome a user can rely on."""

from __future__ import annotations

import json

import pytest

from services.ingest.adapters import x_tweet
from services.ingest.brands import DEFAULT_BRANDS_FILE, BrandMatcher, load_brands
from services.ingest.normalize import Limits, MentionError, normalize, parse_body

NOW = 1_790_000_000.0
LIMITS = Limits(max_text_chars=280, max_raw_payload_bytes=1024, future_skew_seconds=300)
MATCHER = BrandMatcher(load_brands(DEFAULT_BRANDS_FILE))


def mention(**over):
    m = {"source": "x", "external_id": "1", "text": "Acme Bank down", "created_at": NOW - 60}
    m.update(over)
    return m


def test_control_characters_are_removed_but_newlines_and_tabs_stay():
    m = normalize(mention(text="Acme\x00 Bank\x1b[31m down\x7f\nline two\tend"), b"{}", LIMITS, now=NOW)
    assert m.text == "Acme Bank[31m down\nline two\tend"
    assert MATCHER.match(m.text).brands == ["acmebank"]


def test_emoji_flood_is_truncated_by_characters_and_flagged():
    flood = "Acme Bank " + "😡" * 100_000
    m = normalize(mention(text=flood), b"{}", LIMITS, now=NOW)
    assert m.text_truncated and len(m.text) == 280 and m.text.endswith("😡")
    m.SerializeToString()  # still valid UTF-8 on the wire
    assert MATCHER.match(m.text).brands == ["acmebank"]


def test_zero_width_characters_are_kept_in_text_and_ignored_by_brand_matching():
    m = normalize(mention(text="Acme\u200b Ba\u200dnk is down"), b"{}", LIMITS, now=NOW)
    assert "\u200b" in m.text and "\u200d" in m.text
    assert MATCHER.match(m.text).brands == ["acmebank"]


def test_rtl_text_and_bidi_controls_are_kept():
    text = "\u202eknaB emcA\u202c آکمه قطع است"
    m = normalize(mention(text=text), b"{}", LIMITS, now=NOW)
    assert m.text == text  # format characters (Cf) are content; the classifier sees what users saw
    assert MATCHER.match(m.text).brands == ["acmebank"]  # the Persian name still matches


def test_invalid_utf8_is_400_class_error_naming_the_byte():
    with pytest.raises(MentionError, match="byte 9"):
        parse_body(b'{"text":"\xff\xfe"}', "application/json")


@pytest.mark.parametrize("value", [10**30, 1e300, 2**63])
def test_giant_engagement_numbers_from_a_platform_are_clamped(value):
    tweet = {"id_str": "5", "text": "Acme Bank", "created_at": "Wed Oct 10 20:19:24 +0000 2018",
             "favorite_count": value, "retweet_count": value, "user": {"followers_count": value}}
    m = normalize(x_tweet(tweet), b"{}", LIMITS, now=NOW)
    assert m.engagement.likes == m.engagement.reposts == m.author.follower_count == 10**15


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_counters_are_rejected(value):
    with pytest.raises(MentionError) as err:
        normalize(json.loads(json.dumps(mention(engagement={"likes": value}))), b"{}", LIMITS, now=NOW)
    assert err.value.field == "engagement.likes"


@pytest.mark.parametrize(
    ("created_at", "needle"),
    [("1970-01-01T00:00:00Z", "before 2006"), (0, "before 2006"), ("2099-01-01T00:00:00Z", "future"),
     (NOW + 301, "future"), ("Thu Jan 01 00:00:00 +0000 1970", "before 2006")],
)
def test_timestamps_in_1970_or_the_future_are_rejected_with_the_reason(created_at, needle):
    obj = x_tweet({"id_str": "6", "text": "hi", "created_at": created_at}) if isinstance(created_at, str) \
        and "+0000" in created_at else mention(created_at=created_at)
    with pytest.raises(MentionError) as err:
        normalize(obj, b"{}", LIMITS, now=NOW)
    assert err.value.field == "created_at" and needle in err.value.reason


def test_small_clock_skew_is_tolerated():
    m = normalize(mention(created_at=NOW + 120), b"{}", LIMITS, now=NOW)
    assert m.created_at.seconds == int(NOW + 120)
