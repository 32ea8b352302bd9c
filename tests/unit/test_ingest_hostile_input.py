"""Hostile or odd input through the whole ingest path (adapter -> normalize -> brand tagging): each case has
a defined outcome a user can rely on."""

from __future__ import annotations

import json

import pytest

from services.common.timeutil import ts_from_epoch
from services.ingest import jsonparse
from services.ingest import signatures as sig
from services.ingest.access import bearer_ok, client_key, principal
from services.ingest.adapters import meta_webhook, x_account_activity, x_tweet
from services.ingest.brands import DEFAULT_BRANDS_FILE, BrandMatcher, load_brands
from services.ingest.dedupe import DedupeWindow
from services.ingest.faults import FaultLog
from services.ingest.normalize import Limits, MentionError, clean_id, normalize, parse_body

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


# --- the eight 500 classes of issue 17, each now a 4xx-class error with the field and the reason ------------

def _err(body: bytes, ctype: str = "application/json") -> MentionError:
    with pytest.raises(MentionError) as err:
        parse_body(body, ctype)
    return err.value


@pytest.mark.parametrize("ctype", ["application/json", "application/x-ndjson", "application/json-seq"])
def test_deep_nesting_is_rejected_before_any_object_is_built(ctype):
    deep = b"[" * 5000 + b"]" * 5000
    body = b"\x1e" + deep if ctype == "application/json-seq" else deep
    err = _err(body, ctype)
    assert err.field == "$" and "nesting deeper than 64" in err.reason


def test_brackets_inside_strings_do_not_count_as_nesting():
    value = {"text": "[" * 1000 + "{" * 1000}
    assert parse_body(json.dumps(value).encode(), "application/json")[0][0] == value
    assert jsonparse.nesting_depth('{"a": "\\"[[["}') == 1


def test_integer_literal_beyond_the_limit_is_rejected():
    err = _err(b'{"source":"x","external_id":' + b"9" * 5000 + b',"text":"t"}')
    assert "integer literal of 5000 digits" in err.reason


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
def test_non_finite_numbers_are_rejected_by_the_decoder(literal):
    err = _err(b'{"created_at":' + literal + b"}")
    assert "finite" in err.reason


@pytest.mark.parametrize("created_at", [float("nan"), "nan", "NaN", "inf", "-Infinity", 10**400, "9" * 5000,
                                        float("inf"), True])
def test_non_finite_or_absurd_created_at_is_a_field_error(created_at):
    with pytest.raises(MentionError) as err:
        normalize(mention(created_at=created_at), b"{}", LIMITS, now=NOW)
    assert err.value.field == "created_at"


def test_timeutil_refuses_nan_and_out_of_range_with_value_error():
    for bad in (float("nan"), float("inf"), 1e30, -1e30):
        with pytest.raises(ValueError):
            ts_from_epoch(bad)
    assert ts_from_epoch(1.5).nanos == 500_000_000


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udfff", b"\\ud800x", b"\\uffff"])
def test_lone_surrogates_are_rejected_naming_the_field(escape):
    err = _err(b'{"source":"x","external_id":"1","text":"t","brands":["' + escape + b'"]}')
    assert err.field == "brands[0]" and "surrogate" in err.reason


def test_a_valid_surrogate_pair_is_an_ordinary_character():
    (value, _raw, _line), = parse_body(b'{"text":"\\ud83d\\ude00"}', "application/json")
    assert value["text"] == "\U0001f600"


def test_lone_surrogates_reaching_normalize_from_a_connector_are_dropped_from_brands():
    m = normalize(mention(brands=["\ud800acme", "\udc00"]), b"{}", LIMITS, now=NOW)
    assert list(m.brands) == ["acme"]
    m.SerializeToString()


@pytest.mark.parametrize("value", ["99999999999999999999", "  1" + "0" * 30, "+5" + "0" * 20, "9" * 5000])
def test_counters_given_as_huge_decimal_strings_are_clamped(value):
    m = normalize(mention(engagement={"likes": value}, author={"followers": value}), b"{}", LIMITS, now=NOW)
    assert m.engagement.likes == m.author.follower_count == 10**15
    m.SerializeToString()


def test_small_counter_strings_still_parse():
    assert normalize(mention(engagement={"likes": "42"}), b"{}", LIMITS, now=NOW).engagement.likes == 42


@pytest.mark.parametrize("header", ["sha256=\udcff\udcfe", "sha256=é", "sha256=abc\x00", "x" * 5000])
def test_non_ascii_signature_headers_are_invalid_not_faults(header):
    assert not sig.verify_x_signature("s", b"{}", header)
    assert not sig.verify_meta_signature("s", b"{}", header)
    assert sig.check_generic_signature("s", b"{}", "1790000000", header, 300, now=NOW) == "invalid"


@pytest.mark.parametrize("timestamp", ["\udcff", "²", "٣", "9" * 5000, "-1", "1.5", "12 34"])
def test_odd_generic_timestamps_are_invalid(timestamp):
    assert sig.check_generic_signature("s", b"{}", timestamp, "v1=00", 300, now=NOW) == "invalid"


def test_generic_signature_still_verifies():
    ts = str(int(NOW))
    good = sig.generic_signature("s", ts, b"{}")
    assert sig.check_generic_signature("s", b"{}", ts, good, 300, now=NOW) is None


def test_non_ascii_authorization_is_refused_and_still_rate_limited_by_a_key():
    assert not bearer_ok("Bearer \udcff", ["t"])
    # Not a principal, so it is limited by its address (a new header per request buys no new bucket).
    assert principal("Bearer \udcff", ["t"]) is None
    assert client_key(principal("Bearer \udcff", ["t"]), "1.2.3.4") == "a:1.2.3.4"


def _outcomes(candidates):
    out = []
    for c in candidates:
        if c.error:
            out.append(("error", c.error))
            continue
        try:
            out.append(("ok", normalize(c.obj, c.raw, LIMITS, now=NOW).external_id))
        except MentionError as exc:
            out.append((exc.field, exc.reason))
    return out


def test_x_delivery_with_bad_timestamps_fails_only_those_items():
    payload = jsonparse.loads(json.dumps({"for_user_id": "1", "tweet_create_events": [
        {"id_str": "1", "text": "a", "timestamp_ms": "²"},
        {"id_str": "2", "text": "b", "timestamp_ms": "9" * 5000},
        {"id_str": "3", "text": "c", "timestamp_ms": 10**400},
        {"id_str": "4", "text": "d", "timestamp_ms": str(int(NOW * 1000))},
    ]}), per_item=True)
    out = _outcomes(x_account_activity(payload))
    assert [o[0] for o in out] == ["created_at", "created_at", "created_at", "ok"]


def test_meta_delivery_with_an_absurd_timestamp_fails_only_that_item():
    big = 10**400
    payload = jsonparse.loads(json.dumps({"object": "page", "entry": [{"id": "1", "time": NOW, "messaging": [
        {"sender": {"id": "9"}, "timestamp": big, "message": {"mid": "m1", "text": "bad"}},
        {"sender": {"id": "9"}, "timestamp": NOW * 1000, "message": {"mid": "m2", "text": "good"}},
    ], "changes": [{"field": "feed", "value": {"verb": "add", "item": "post", "post_id": "p1", "message": "x",
                                               "created_time": big}}]}]}), per_item=True)
    out = _outcomes(meta_webhook(payload))
    assert sorted(o[0] for o in out) == ["created_at", "created_at", "ok"]


def test_platform_payloads_keep_nan_for_per_item_dead_lettering():
    payload = jsonparse.loads('{"for_user_id":"1","tweet_create_events":[{"id_str":"1","text":"a","created_at":NaN},'
                              '{"id_str":"2","text":"b"}]}', per_item=True)
    assert [o[0] for o in _outcomes(x_account_activity(payload))] == ["created_at", "ok"]


# --- ids, handles, brands and keys are clean ----------------------------------------------------------------

def test_control_characters_are_removed_from_ids_handles_brands_and_the_key():
    m = normalize(mention(external_id="18\x0050\x1b", author={"handle": "\x07ana\u200b", "id": "u\x00"},
                          brands=["Ac\x00me", "\x01"], reply_to_id="r\x00", url="https://x.com/\x00a", lang="e\x00s"),
                  b"{}", LIMITS, now=NOW)
    assert m.external_id == "1850" and m.mention_id == "x:1850"
    assert m.author.handle == "ana" and m.author.id == "u" and list(m.brands) == ["acme"]
    assert m.reply_to_id == "r" and m.url == "https://x.com/a" and m.language_hint == "es"


def test_an_id_of_only_control_characters_is_rejected():
    with pytest.raises(MentionError) as err:
        normalize(mention(external_id="\x00\x1f "), b"{}", LIMITS, now=NOW)
    assert err.value.field == "external_id"


def test_clean_id_keeps_ordinary_unicode():
    assert clean_id("ana_ñ-日本") == "ana_ñ-日本"


# --- json-seq (RFC 7464) -----------------------------------------------------------------------------------

def test_json_seq_records_are_parsed():
    items = parse_body(b'\x1e{"a":1}\n\x1e{"b":2}\n', "application/json-seq")
    assert [(v, line) for v, _r, line in items] == [({"a": 1}, 1), ({"b": 2}, 2)]
    assert _err(b'{"a":1}\n', "application/json-seq").reason.startswith("a JSON text sequence")


# --- memory and faults --------------------------------------------------------------------------------------

def test_dedupe_window_size_is_measured_and_shrinks_after_expiry():
    t = [0.0]
    d = DedupeWindow(10, 100_000, clock=lambda: t[0])
    for i in range(5000):
        assert d.reserve(f"x:{i}|0|0|0|0")
        d.commit(f"x:{i}|0|0|0|0")
    assert len(d) == 5000 and d.size_bytes() > 5000 * 100
    t[0] = 11.0
    assert d.prune() == 0 and d.size_bytes() == 0


def test_faults_are_logged_once_per_cause_per_interval():
    t = [0.0]
    faults = FaultLog(interval=60, clock=lambda: t[0])
    assert faults.report("x", ValueError("a"))
    assert not any(faults.report("x", ValueError("b")) for _ in range(100))
    assert faults.report("x", KeyError("other cause"))
    t[0] = 61
    assert faults.report("x", ValueError("c"))
