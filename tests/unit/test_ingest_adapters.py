"""Platform payloads (fixtures in the documented shapes) -> mentions, through the one normalize path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.codec import pb
from services.ingest import adapters
from services.ingest.normalize import Limits, MentionError, normalize

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
NOW = 1_790_000_000.0
LIMITS = Limits()


def load(name):
    return json.loads((FIXTURES / name).read_text())


def mentions(cands):
    return [normalize(c.obj, c.raw, LIMITS, now=NOW) for c in cands]


def test_x_tweet_create_events():
    got = mentions(adapters.x_account_activity(load("x_tweet_create_events.json")))
    first, second = got
    assert first.mention_id == "x:1050118621198921728"
    assert first.url == "https://x.com/ana_example/status/1050118621198921728"
    assert first.created_at.seconds == 1539202764
    assert first.author.handle == "ana_example" and first.author.follower_count == 21843 and first.author.verified
    assert (first.engagement.likes, first.engagement.reposts, first.engagement.replies, first.engagement.quotes) \
        == (40, 11, 5, 2)
    assert first.language_hint == "en"
    # Long tweets: the full text lives in extended_tweet; "und" language is no hint.
    assert second.text.endswith("#AcmeDown") and second.language_hint == ""
    assert second.reply_to_id == "1050118621198921728"
    assert second.created_at.seconds == 1539202801  # from the created_at string


def test_x_non_tweet_events_yield_nothing_and_foreign_payloads_are_refused():
    assert list(adapters.x_account_activity(load("x_favorite_events.json"))) == []
    with pytest.raises(adapters.PayloadError):
        list(adapters.x_account_activity({"tweet_create_events": []}))


def test_meta_page_feed_comment_and_ignored_reaction():
    (m,) = mentions(adapters.meta_webhook(load("meta_page_feed.json")))
    assert m.source == pb.SOURCE_FACEBOOK and m.mention_id == "facebook:2_908070"
    assert m.author.display_name == "Cinderella Hoover" and m.conversation_id == "1067280970047460_2"
    assert m.created_at.seconds == 1700000000


def test_meta_instagram_comment_and_id_only_mention():
    (m,) = mentions(adapters.meta_webhook(load("meta_instagram_comments.json")))
    assert m.source == pb.SOURCE_INSTAGRAM and m.external_id == "17865799348089039"
    assert m.author.handle == "test_user" and m.conversation_id == "123123123"


def test_meta_messenger_skips_echoes():
    (m,) = mentions(adapters.meta_webhook(load("meta_messenger.json")))
    assert m.text == "Acme Card blocked abroad, please help" and m.created_at.seconds == 1700000200


def test_jetstream_only_post_creates_become_mentions():
    events = [json.loads(line) for line in (FIXTURES / "jetstream_events.jsonl").read_text().splitlines()]
    cands = [c for c in map(adapters.jetstream_event, events) if c is not None]
    first, second = mentions(cands)
    assert first.mention_id == "bluesky:at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3l3qo2vutsw2b"
    assert first.url == "https://bsky.app/profile/did:plc:eygmaihciaxprqvxpfvl6flk/post/3l3qo2vutsw2b"
    assert first.language_hint == "en"
    assert second.reply_to_id == "at://did:plc:a/app.bsky.feed.post/parent1"
    assert second.conversation_id == "at://did:plc:a/app.bsky.feed.post/root1"


def test_mastodon_status_html_becomes_text():
    cand = adapters.mastodon_status(load("mastodon_status.json"))
    m = mentions([cand])[0]
    assert m.text == "Die #AcmeDown App stürzt ab & ich kann nicht zahlen\nzweiter Absatz"
    assert m.external_id == "https://mastodon.social/users/Gargron/statuses/103270115826048975"
    assert m.author.handle == "Gargron" and m.author.follower_count == 322930
    assert (m.engagement.likes, m.engagement.reposts, m.engagement.replies) == (11, 6, 5)


def test_mastodon_reblog_is_the_original_post():
    status = load("mastodon_status.json")
    boost = {"id": "1", "uri": "https://x.example/boost/1", "content": "", "account": {"acct": "booster"},
             "reblog": status}
    m = mentions([adapters.mastodon_status(boost)])[0]
    assert m.external_id == status["uri"]


def test_reddit_listing_and_cursor():
    cands, after = adapters.reddit_listing(load("reddit_search_new.json"))
    first, second = mentions(cands)
    assert after == "t3_1h0abcd"
    assert first.mention_id == "reddit:t3_1h0abce"
    assert first.text == "Is Acme Bank down?\n\nSince 9am the Acme Bank app says error 503. Anyone else?"
    assert first.url == "https://www.reddit.com/r/personalfinance/comments/1h0abce/is_acme_bank_down/"
    assert second.engagement.likes == 0  # negative score is not negative likes


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
shaped = st.fixed_dictionaries({"for_user_id": json_values, "tweet_create_events": json_values,
                                "object": st.sampled_from(["page", "instagram"]), "entry": st.lists(json_values),
                                "kind": st.sampled_from(["commit", "Listing"]), "commit": json_values,
                                "data": json_values})


@given(st.one_of(json_values, shaped))
def test_adapters_never_crash_on_arbitrary_json(value):
    # Each adapter either refuses the envelope (PayloadError) or yields dicts for normalize() to judge.
    cands = []
    for adapt in (adapters.x_account_activity, adapters.meta_webhook, lambda v: adapters.reddit_listing(v)[0]):
        try:
            cands += list(adapt(value))
        except adapters.PayloadError:
            pass
    cands += [c for c in (adapters.jetstream_event(value), adapters.mastodon_status(value)) if c is not None]
    for cand in cands:
        try:  # and whatever they yield, normalize() accepts or refuses with a named field, never crashes
            normalize(cand.obj, cand.raw, LIMITS, now=NOW)
        except MentionError as exc:
            assert exc.field


def test_rss_and_atom_items():
    from services.ingest.polling import feed_items

    rss = feed_items((FIXTURES / "rss_feed.xml").read_bytes())
    (when, cand), _ = rss
    m = mentions([cand])[0]
    assert m.external_id == "forum-101" and m.url == "https://forum.example/t/101"
    assert m.text == "Acme Bank outage?\n\nCan't log in to Acme Bank since 9:00"
    assert when == m.created_at.seconds == 1789895100
    ((when, cand),) = feed_items((FIXTURES / "atom_feed.xml").read_bytes())
    m = mentions([cand])[0]
    assert m.external_id == "urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a"
    assert m.url == "http://example.org/2026/11/23/acmenet" and m.author.handle == "John Doe"
    with pytest.raises(adapters.PayloadError):
        feed_items(b"<html><body>not a feed</body></html>")
    with pytest.raises(adapters.PayloadError):
        feed_items(b"\xff\xfe garbage")
