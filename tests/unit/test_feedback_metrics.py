"""Feedback statistics: intervals, categories of free text, repetition, and the per-model summary."""

from __future__ import annotations

import json

import pytest

from guanaco_dagster.feedback.feedback_metrics import (
    FEEDBACK_CATEGORIES,
    FeedbackItem,
    categorise_feedback,
    repetition_score,
    summarise_feedback,
    thumbs_up_standard_error,
    wilson_interval,
)

try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a dev extra; the property tests at the end need it
    given = None


# Intervals


@pytest.mark.parametrize(
    ("successes", "total", "expected"),
    [
        (8, 10, (0.4902, 0.9433)),
        (50, 100, (0.4038, 0.5962)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (1, 1, (0.2065, 1.0)),
        (0, 0, (0.0, 1.0)),
    ],
)
def test_wilson_interval_matches_known_values(
    successes: int, total: int, expected: tuple[float, float]
) -> None:
    assert wilson_interval(successes, total) == pytest.approx(expected, abs=1e-4)


def test_wilson_interval_narrows_with_more_feedback() -> None:
    low_10, high_10 = wilson_interval(8, 10)
    low_1000, high_1000 = wilson_interval(800, 1000)
    assert high_1000 - low_1000 < high_10 - low_10


def test_wilson_interval_widens_with_larger_z() -> None:
    low_95, high_95 = wilson_interval(8, 10)
    low_99, high_99 = wilson_interval(8, 10, z=2.575829)
    assert low_99 < low_95 and high_99 > high_95


@pytest.mark.parametrize(("successes", "total"), [(-1, 10), (11, 10), (0, -1)])
def test_impossible_counts_are_rejected(successes: int, total: int) -> None:
    with pytest.raises(ValueError, match=f"successes={successes}, total={total}"):
        wilson_interval(successes, total)
    with pytest.raises(ValueError, match="successes <= total"):
        thumbs_up_standard_error(successes, total)


@pytest.mark.parametrize(
    ("successes", "total", "expected"),
    [(8, 10, 0.126491), (50, 100, 0.05), (10, 10, 0.0), (0, 0, 0.0)],
)
def test_standard_error_is_binomial(successes: int, total: int, expected: float) -> None:
    assert thumbs_up_standard_error(successes, total) == pytest.approx(expected, abs=1e-6)


# Categories


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It keeps repeating itself", ["repetitive"]),
        ("says the same thing over and over", ["repetitive"]),
        ("total gibberish", ["incoherent"]),
        ("this makes no sense", ["incoherent"]),
        ("Out of character, talks like an AI language model", ["off_character"]),
        ("she broke character twice", ["off_character"]),
        ("one word answers, way too short", ["too_short"]),
        ("too long, walls of text", ["too_long"]),
        ("so BORING and bland", ["boring"]),
        ("really rude and creepy", ["rude_or_toxic"]),
        ("super engaging and immersive", ["engaging"]),
        ("lol hilarious", ["funny"]),
        ("very creative and original", ["creative"]),
        ("slow, took forever to reply", ["slow"]),
        ("funny but repetitive", ["repetitive", "funny"]),
        ("ok", ["other"]),
    ],
)
def test_feedback_text_is_categorised(text: str, expected: list[str]) -> None:
    assert categorise_feedback(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not boring", ["other"]),
        ("never out of character", ["other"]),
        ("wasn't repetitive at all", ["other"]),
        ("isn\u2019t rude", ["other"]),
        ("not very interesting", ["boring"]),
        ("not creative", ["boring"]),
        ("doesn't make sense", ["incoherent"]),
        ("it doesn't really make any sense", ["incoherent"]),
        ("did not stay in character", ["off_character"]),
        ("not long enough", ["too_short"]),
        ("not funny", ["other"]),
    ],
)
def test_negation_changes_or_cancels_the_category(text: str, expected: list[str]) -> None:
    assert categorise_feedback(text) == expected


def test_negation_ends_at_the_clause_boundary() -> None:
    assert categorise_feedback("not boring, but repetitive") == ["repetitive"]
    assert categorise_feedback("Not great. Boring.") == ["boring"]


def test_took_too_long_is_about_speed_not_reply_length() -> None:
    assert categorise_feedback("took too long to answer") == ["slow"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_blank_feedback_is_empty(text: str) -> None:
    assert categorise_feedback(text) == ["empty"]


def test_words_inside_other_words_do_not_match() -> None:
    assert categorise_feedback("unoriginal") == ["boring"]
    assert categorise_feedback("funding the fundamentals") == ["other"]


def test_every_reported_category_is_a_known_category() -> None:
    samples = ["boring and rude", "lol", "", "meh not creative", "too slow, too long, too short"]
    for text in samples:
        assert set(categorise_feedback(text)) <= set(FEEDBACK_CATEGORIES)


# Repetition


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        ([], 0.0),
        (["Only one reply here."], 0.0),
        (["I love the sea and the sky."] * 3, 1.0),
        (["Hello there, friend!", "hello THERE friend"], 1.0),
        (["the cat sat on the mat", "a dog ran in the park"], 0.0),
        (["yes", "no"], 0.0),
        (["oh yes", "oh no"], 1 / 3),  # under three words: unigram Jaccard {oh} / {oh, yes, no}
        (["a b c d", "a b c e"], 1 / 3),  # trigrams {abc, bcd} vs {abc, bce}
    ],
)
def test_repetition_score_is_mean_similarity_of_consecutive_replies(
    replies: list[str], expected: float
) -> None:
    assert repetition_score(replies) == pytest.approx(expected)


def test_repetition_score_averages_over_consecutive_pairs() -> None:
    replies = ["same words here", "same words here", "completely different reply now"]
    assert repetition_score(replies) == pytest.approx(0.5)


# Summary


def conversation(*replies: str) -> list[tuple[str, str]]:
    """A conversation where the user says "hi" before each bot reply."""
    messages: list[tuple[str, str]] = []
    for reply in replies:
        messages += [("user", "hi"), ("bot", reply)]
    return messages


@pytest.fixture
def feedback_items() -> list[FeedbackItem]:
    return [
        FeedbackItem("c1", True, "so funny", conversation("one two", "three four")),
        FeedbackItem("c2", False, "boring and repetitive", conversation("same reply", "same reply")),
        FeedbackItem("c3", True, "", conversation("x y z w")),
        FeedbackItem("c4", False, "really boring", conversation("a", "b", "c")),
    ]


def test_summary_counts_thumbs(feedback_items: list[FeedbackItem]) -> None:
    summary = summarise_feedback(feedback_items)
    assert (summary.feedback_count, summary.thumbs_up, summary.thumbs_down) == (4, 2, 2)
    assert summary.thumbs_up_ratio == 0.5
    assert (summary.wilson_low, summary.wilson_high) == pytest.approx(wilson_interval(2, 4))
    assert summary.standard_error == pytest.approx(0.25)


def test_summary_lists_categories_most_common_first(feedback_items: list[FeedbackItem]) -> None:
    counts = summarise_feedback(feedback_items, category_method="rules").category_counts
    assert counts == {"boring": 2, "empty": 1, "funny": 1, "repetitive": 1}
    assert list(counts) == ["boring", "empty", "funny", "repetitive"]


def test_summary_measures_conversations(feedback_items: list[FeedbackItem]) -> None:
    summary = summarise_feedback(feedback_items)
    assert summary.mean_conversation_length == pytest.approx((4 + 4 + 2 + 6) / 4)
    assert summary.mean_bot_reply_words == pytest.approx((2 + 2 + 2 + 2 + 4 + 1 + 1 + 1) / 8)


def test_summary_repetition_ignores_conversations_with_fewer_than_two_replies(
    feedback_items: list[FeedbackItem],
) -> None:
    # c1: 0, c2: 1, c4: 0 (c3 has a single reply and cannot repeat).
    assert summarise_feedback(feedback_items).repetition_score == pytest.approx(1 / 3)


def test_summary_counts_a_conversation_once_using_its_longest_snapshot() -> None:
    items = [
        FeedbackItem("c1", True, "fun", conversation("a")),
        FeedbackItem("c1", False, "boring", conversation("a", "b", "c")),
    ]
    summary = summarise_feedback(items)
    assert summary.feedback_count == 2
    assert summary.mean_conversation_length == 6


def test_summary_of_no_feedback_is_all_zero_with_widest_interval() -> None:
    summary = summarise_feedback([])
    assert summary.feedback_count == 0
    assert summary.thumbs_up_ratio == 0.0
    assert (summary.wilson_low, summary.wilson_high) == (0.0, 1.0)
    assert summary.category_counts == {}
    assert summary.mean_conversation_length == summary.mean_bot_reply_words == summary.repetition_score == 0.0


def test_summary_dict_is_json_serialisable(feedback_items: list[FeedbackItem]) -> None:
    as_dict = summarise_feedback(feedback_items, category_method="rules").to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["thumbs_up"] == 2 and as_dict["category_counts"]["boring"] == 2


def test_summary_markdown_shows_metrics_and_categories(feedback_items: list[FeedbackItem]) -> None:
    markdown = summarise_feedback(feedback_items, category_method="rules").to_markdown()
    assert "| Metric | Value |" in markdown
    assert "| Thumbs-up ratio | 50.0% |" in markdown
    assert "| Category | Count | Share |" in markdown
    assert "| boring | 2 | 50.0% |" in markdown


def test_summary_markdown_of_no_feedback_says_so() -> None:
    assert "(no feedback)" in summarise_feedback([]).to_markdown()


# Properties

if given is not None:
    counts = st.integers(min_value=0, max_value=10_000).flatmap(
        lambda total: st.tuples(st.integers(min_value=0, max_value=total), st.just(total))
    )

    @given(counts)
    def test_wilson_interval_lies_in_unit_range_and_contains_the_ratio(count: tuple[int, int]) -> None:
        successes, total = count
        low, high = wilson_interval(successes, total)
        assert 0.0 <= low <= high <= 1.0
        if total:
            assert low <= successes / total <= high

    @given(st.text(max_size=200))
    def test_any_text_gets_at_least_one_known_category(text: str) -> None:
        categories = categorise_feedback(text)
        assert categories and set(categories) <= set(FEEDBACK_CATEGORIES)

    @given(st.lists(st.text(max_size=40), max_size=8))
    def test_repetition_score_lies_in_unit_range(replies: list[str]) -> None:
        assert 0.0 <= repetition_score(replies) <= 1.0
