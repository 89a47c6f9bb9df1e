"""The leaderboard's order can be trusted: rated models above provisional ones, intervals on every rate,
and only models that reached users."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from guanaco_dagster.feedback.leaderboard import build_leaderboard, rank_rows
from guanaco_dagster.feedback.leaderboard_row import LeaderboardRow
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Conversation, Feedback, LatencyReportRow
from guanaco_dagster.submissions.developers import create_developer
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission
from tests.fixtures.store import walk_to

_ids = itertools.count()


def _row(sid: str, up: int, down: int, **metrics: float | None) -> LeaderboardRow:
    total = up + down
    return LeaderboardRow(
        submission_id=sid,
        model_name=sid,
        developer="dev",
        status="deployed",
        thumbs_up=up,
        thumbs_down=down,
        total_feedback_count=total,
        thumbs_up_ratio=up / total if total else None,
        thumbs_up_ratio_se=None,
        wilson_lower_bound=metrics.get("wilson_lower_bound"),
        mean_conversation_length=metrics.get("mean_conversation_length"),
        repetition_score=metrics.get("repetition_score"),
        latency_p95_s=metrics.get("latency_p95_s"),
    )


def test_a_model_below_the_feedback_minimum_is_never_ranked_above_a_rated_one():
    rows = [
        _row(
            "fast-but-unrated", 1, 0, wilson_lower_bound=0.9, latency_p95_s=0.1, mean_conversation_length=40
        ),
        _row("rated", 6, 4, wilson_lower_bound=0.3, latency_p95_s=2.0, mean_conversation_length=4),
    ]
    ranked = rank_rows(rows, min_feedback=5)
    assert [(r.submission_id, r.overall_rank, r.provisional) for r in ranked] == [
        ("rated", 1, False),
        ("fast-but-unrated", 2, True),
    ]


def test_a_model_with_only_a_latency_does_not_win_on_it():
    rows = [
        _row("only-latency", 5, 0, latency_p95_s=0.01),
        _row(
            "well-liked",
            5,
            0,
            wilson_lower_bound=0.5,
            mean_conversation_length=10,
            repetition_score=0.1,
            latency_p95_s=0.5,
        ),
    ]
    assert [r.submission_id for r in rank_rows(rows, min_feedback=5)] == ["well-liked", "only-latency"]


def test_the_minimum_is_configurable():
    rows = [_row("a", 2, 0, wilson_lower_bound=0.3), _row("b", 9, 9, wilson_lower_bound=0.2)]
    assert [r.provisional for r in rank_rows(rows, min_feedback=2)] == [False, False]
    assert [r.submission_id for r in rank_rows(rows, min_feedback=2)] == ["a", "b"]
    assert [r.submission_id for r in rank_rows(rows, min_feedback=3)] == ["b", "a"]


# --- against the store -------------------------------------------------------------------------------


def _deployed(store: Store, developer_name: str, repo: str) -> str:
    with store.session() as session:
        developer, _ = create_developer(session, f"{developer_name}-{next(_ids)}")
        submission = create_submission(session, developer, SubmissionRequest(model_repo=repo))
        walk_to(session, submission.id, Status.DEPLOYED)
        return submission.id


def _conversations(store: Store, submission_id: str, thumbs: list[bool | None]) -> None:
    """One conversation per entry; True/False leave that thumb, None leaves no feedback."""
    with store.session() as session:
        for thumb in thumbs:
            conversation = Conversation(id=f"c{next(_ids)}", submission_id=submission_id, user_id="u")
            session.add(conversation)
            session.flush()
            if thumb is not None:
                session.add(
                    Feedback(conversation_id=conversation.id, submission_id=submission_id, thumbs_up=thumb)
                )


@pytest.fixture
def board(sqlite_store: Store) -> dict[str, str]:
    """Four deployed models: rated and liked, rated and disliked, provisional, never reached by a user."""
    models = {
        "liked": _deployed(sqlite_store, "ada", "org/liked"),
        "disliked": _deployed(sqlite_store, "bob", "org/disliked"),
        "provisional": _deployed(sqlite_store, "cy", "org/provisional"),
        "unreached": _deployed(sqlite_store, "di", "org/unreached"),
    }
    _conversations(sqlite_store, models["liked"], [True] * 4 + [False] * 2)
    _conversations(sqlite_store, models["disliked"], [True] + [False] * 5)
    _conversations(sqlite_store, models["provisional"], [True, None])
    with sqlite_store.session() as session:
        # The fastest server of all, yet nobody talked to it.
        session.add(
            LatencyReportRow(submission_id=models["unreached"], passed=True, report={"latency_p95_s": 0.01})
        )
    return models


def _names(models: dict[str, str], rows: list[LeaderboardRow]) -> list[str]:
    by_id = {sid: name for name, sid in models.items()}
    return [by_id[row.submission_id] for row in rows]


def test_the_leaderboard_lists_rated_models_best_first_then_provisional_ones(sqlite_store, board):
    with sqlite_store.session() as session:
        rows = build_leaderboard(session, min_feedback=5)
    assert _names(board, rows) == ["liked", "disliked", "provisional"]
    assert [(r.overall_rank, r.provisional) for r in rows] == [(1, False), (2, False), (3, True)]


def test_a_deployed_model_no_user_reached_is_not_listed(sqlite_store, board):
    with sqlite_store.session() as session:
        listed = {row.submission_id for row in build_leaderboard(session, min_feedback=5)}
    assert board["unreached"] not in listed


def test_every_rate_comes_with_its_wilson_interval(sqlite_store, board):
    with sqlite_store.session() as session:
        rows = build_leaderboard(session, min_feedback=5)
    liked = rows[0]
    assert (liked.thumbs_up, liked.total_feedback_count, liked.conversation_count) == (4, 6, 6)
    assert liked.wilson_lower_bound == pytest.approx(0.3000, abs=1e-3)
    assert liked.wilson_upper_bound == pytest.approx(0.9032, abs=1e-3)
    for row in rows:
        assert row.wilson_lower_bound <= row.thumbs_up_ratio <= row.wilson_upper_bound


def test_rows_carry_the_fields_chais_client_reads(sqlite_store, board):
    with sqlite_store.session() as session:
        row = build_leaderboard(session, min_feedback=5)[0]
    assert row.model_repo == "org/liked" and row.developer_uid == row.developer
    assert datetime.fromisoformat(row.timestamp).tzinfo is not None
    assert (row.reward_repo, row.model_num_parameters) == (None, None)


def test_a_submission_window_keeps_only_models_submitted_in_it(sqlite_store, board):
    with sqlite_store.session() as session:
        assert build_leaderboard(session, 5, submitted_before=datetime(2000, 1, 1, tzinfo=UTC)) == []
        assert len(build_leaderboard(session, 5, submitted_after=datetime(2000, 1, 1, tzinfo=UTC))) == 3
