"""Invites to the beta web page: what a token lets a tester do, and the operator's commands for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from guanaco_dagster.beta.conversations import start_conversation
from guanaco_dagster.beta.invites import (
    ConsentRequired,
    InviteNotFound,
    InviteRefused,
    NotTheTestersOwn,
    check_acts_as_itself,
    create_invite,
    invite_for_token,
    invite_url,
    invite_user_id,
    parse_expiry,
    record_consent,
    require_consent,
    revoke_invite,
)
from guanaco_dagster.cli.app import app
from guanaco_dagster.store.models import BetaInvite, utcnow
from guanaco_dagster.submissions.developers import create_developer, hash_key
from guanaco_dagster.submissions.submissions import SubmissionRequest, create_submission

IN_A_WEEK = timedelta(days=7)


def _invite(store, name="Ada", lifetime=IN_A_WEEK) -> tuple[str, str]:
    with store.session() as session:
        invite, token = create_invite(session, name, utcnow() + lifetime)
        return invite.id, token


def test_an_invite_token_lets_its_tester_in_as_a_pseudonymous_user_and_is_stored_only_as_a_hash(sqlite_store):
    invite_id, token = _invite(sqlite_store)

    with sqlite_store.session() as session:
        invite = invite_for_token(session, token)
        assert invite.id == invite_id and invite.name == "Ada"
        assert invite_user_id(invite) == f"web-{invite_id}" and "Ada" not in invite_user_id(invite)
        stored = session.scalar(select(BetaInvite))
        assert stored.token_hash == hash_key(token) and token not in stored.token_hash


def test_a_forged_token_is_refused_as_not_recognised(sqlite_store):
    _invite(sqlite_store)

    with sqlite_store.session() as session, pytest.raises(InviteRefused, match="^invite not recognised"):
        invite_for_token(session, "gi-made-up-by-someone")


def test_an_expired_invite_is_refused_with_when_it_expired(sqlite_store):
    _, token = _invite(sqlite_store, lifetime=timedelta(hours=1))

    with sqlite_store.session() as session:
        invite_for_token(session, token, now=utcnow() + timedelta(minutes=59))
        with pytest.raises(InviteRefused, match=r"^invite expired on \d{4}-\d\d-\d\d \d\d:\d\d UTC"):
            invite_for_token(session, token, now=utcnow() + timedelta(minutes=61))


def test_a_revoked_invite_stops_working_at_once_and_keeps_its_first_revocation(sqlite_store):
    invite_id, token = _invite(sqlite_store)

    with sqlite_store.session() as session:
        first = revoke_invite(session, invite_id).revoked_at
    with sqlite_store.session() as session:
        assert revoke_invite(session, invite_id).revoked_at == first
        with pytest.raises(InviteRefused, match="^invite revoked on"):
            invite_for_token(session, token)
        with pytest.raises(InviteNotFound, match="no invite 'nope'"):
            revoke_invite(session, "nope")


def test_a_tester_must_consent_before_chatting_and_consent_is_recorded_once(sqlite_store):
    _, token = _invite(sqlite_store)

    with sqlite_store.session() as session:
        invite = invite_for_token(session, token)
        with pytest.raises(ConsentRequired, match="^consent needed"):
            require_consent(invite)
        record_consent(invite)
        agreed_at = invite.consented_at
    with sqlite_store.session() as session:
        invite = invite_for_token(session, token)
        record_consent(invite)
        require_consent(invite)
        assert invite.consented_at == agreed_at


def test_an_invite_acts_only_as_its_own_tester_and_on_its_own_conversations(sqlite_store):
    _, ada_token = _invite(sqlite_store, "Ada")
    _, bo_token = _invite(sqlite_store, "Bo")
    with sqlite_store.session() as session:
        developer, _key = create_developer(session, "dev")
        submission = create_submission(session, developer, SubmissionRequest(model_repo="org/model"))
        ada = invite_for_token(session, ada_token)
        ada_user = invite_user_id(ada)
        mine = start_conversation(session, user_id=ada_user, submission_id=submission.id).id

    with sqlite_store.session() as session:
        ada, bo = invite_for_token(session, ada_token), invite_for_token(session, bo_token)
        check_acts_as_itself(session, ada, {"user_id": ada_user}, {})
        check_acts_as_itself(session, ada, {"message": "hi"}, {"conversation_id": mine})
        check_acts_as_itself(session, bo, None, {"conversation_id": "unknown-id"})  # the route answers 404
        with pytest.raises(NotTheTestersOwn, match="^an invite acts only as its own tester"):
            check_acts_as_itself(session, bo, {"user_id": ada_user}, {})
        with pytest.raises(NotTheTestersOwn, match="^this conversation belongs to another tester"):
            check_acts_as_itself(session, bo, {"thumbs_up": False}, {"conversation_id": mine})


def test_expiry_is_a_duration_or_an_iso_date_in_the_future():
    now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)

    assert parse_expiry("90m", now) == now + timedelta(minutes=90)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("7d", now) == now + timedelta(days=7)
    assert parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert parse_expiry("2026-12-31", now) == datetime(2026, 12, 31, tzinfo=UTC)
    assert parse_expiry("2026-12-03T10:00+02:00", now) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="^expiry '2026-12-01' is not in the future"):
        parse_expiry("2026-12-01", now)
    with pytest.raises(ValueError, match="^expiry 'soon' is neither a duration"):
        parse_expiry("soon", now)


def test_the_invite_link_opens_the_beta_page_with_the_token():
    link = invite_url("http://beta.example:8080/", "gi-a+b/c")

    parsed = urlparse(link)
    assert (parsed.netloc, parsed.path) == ("beta.example:8080", "/beta/app")
    assert parse_qs(parsed.query) == {"invite": ["gi-a+b/c"]}


# ---------------------------------------------------------------------------------------------------------
# The operator's commands
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def operator_env(tmp_path) -> dict[str, str]:
    return {
        "GUANACO_HOME": str(tmp_path / "home"),
        "GUANACO_DATABASE_URL": f"sqlite:///{tmp_path / 'guanaco.db'}",
        "GUANACO_BETA_PAGE_ENABLED": "true",
    }


def _guanaco(env: dict[str, str], *args: str):
    return CliRunner().invoke(app, list(args), env=env)


def test_admin_invite_prints_a_link_whose_token_the_store_accepts(operator_env):
    from guanaco_dagster.store.database import Store

    result = _guanaco(
        operator_env, "admin", "invite", "--name", "Ada", "--expires", "2d", "--url", "http://h:9"
    )

    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert link.startswith("http://h:9/beta/app?invite=gi-")
    assert "copy the link now" in result.stderr and "the beta page is off" not in result.stderr
    token = parse_qs(urlparse(link).query)["invite"][0]
    with Store(operator_env["GUANACO_DATABASE_URL"]).session() as session:
        invite = invite_for_token(session, token)
        assert invite.name == "Ada"
        assert abs(invite.expires_at - utcnow() - timedelta(days=2)) < timedelta(minutes=1)


def test_admin_invite_warns_when_the_page_is_off_and_refuses_a_past_expiry(operator_env):
    off = {**operator_env, "GUANACO_BETA_PAGE_ENABLED": "false"}

    warned = _guanaco(off, "admin", "invite", "--name", "Ada")
    refused = _guanaco(operator_env, "admin", "invite", "--name", "Ada", "--expires", "2020-01-01")

    assert warned.exit_code == 0 and "the beta page is off" in warned.stderr
    assert refused.exit_code == 2 and "is not in the future" in refused.output


def test_admin_revoke_invite_stops_the_link_and_admin_invites_lists_it_as_revoked(operator_env):
    from guanaco_dagster.store.database import Store

    link = _guanaco(operator_env, "admin", "invite", "--name", "Ada").stdout.strip()
    token = parse_qs(urlparse(link).query)["invite"][0]
    with Store(operator_env["GUANACO_DATABASE_URL"]).session() as session:
        invite_id = invite_for_token(session, token).id

    revoked = _guanaco(operator_env, "admin", "revoke-invite", invite_id)
    listed = _guanaco({**operator_env, "COLUMNS": "200"}, "admin", "invites")
    unknown = _guanaco(operator_env, "admin", "revoke-invite", "nope")

    assert revoked.exit_code == 0 and f"invite {invite_id} for 'Ada' revoked" in revoked.stdout
    row = next(line for line in listed.stdout.splitlines() if invite_id in line)
    assert "Ada" in row and "revoked" in row
    assert unknown.exit_code == 1 and "no invite 'nope'" in unknown.output
    with Store(operator_env["GUANACO_DATABASE_URL"]).session() as session, pytest.raises(InviteRefused):
        invite_for_token(session, token)
