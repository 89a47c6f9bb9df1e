"""The beta web page in a real browser (Debian's chromium driven by Playwright) against the real service and
the session's vLLM server: an operator's invite, consent, chat, feedback the developer reads, battles,
refused invites, and model text that looks like HTML.

Screenshots go to a temporary folder, or to $GUANACO_BETA_PAGE_SHOTS when set (to look at them).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select
from typer.testing import CliRunner

from guanaco_dagster.beta.invites import create_invite, invite_for_token, invite_user_id
from guanaco_dagster.cli.app import app
from guanaco_dagster.feedback.anonymise import mask_pii
from guanaco_dagster.feedback.text_hygiene import clean_text
from guanaco_dagster.ports import free_port
from guanaco_dagster.store.models import Battle, BattleVote, Conversation, Message, Submission, utcnow
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import transition
from tests.fixtures.browser import chromium_context
from tests.fixtures.service import ServiceFixture, running_service

pytestmark = [pytest.mark.vllm]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# A model reply on a loaded 2-core machine can take a while.
WAIT_MS = 120_000
HOSTILE = '<script>window.pwned = true</script><img src=x onerror="window.pwned = true"><b>bold?</b> '


# ---------------------------------------------------------------------------------------------------------
# Fixtures: the service with the page on, a browser, a model server that answers in HTML
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceFixture]:
    """The service as an operator runs it with the beta page on (SQLite store, as `guanaco up`)."""
    home = tmp_path_factory.mktemp("beta-page-home")
    database_url = f"sqlite:///{home / 'guanaco.db'}"
    with running_service(home, database_url, GUANACO_BETA_PAGE_ENABLED="true") as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's chromium, headless, with a fresh profile."""
    with chromium_context(tmp_path_factory.mktemp("chromium-profile"), PHONE) as context:
        context.set_default_timeout(WAIT_MS)
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A fresh tab at phone width; any script error on it fails the test."""
    tab = browser.new_page()
    tab.set_viewport_size(PHONE)
    script_errors: list[str] = []
    tab.on("pageerror", lambda error: script_errors.append(str(error)))
    yield tab
    tab.close()
    assert not script_errors, script_errors


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("GUANACO_BETA_PAGE_SHOTS") or tmp_path_factory.mktemp("beta-page-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _HostileModel(BaseHTTPRequestHandler):
    """Relays everything to the real model server, and puts HTML in front of every completion's text:
    a fault injected into a real model's output (models are written by strangers)."""

    upstream = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._relay(None)

    def do_POST(self) -> None:  # noqa: N802
        self._relay(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def _relay(self, body: bytes | None) -> None:
        headers = {"Content-Type": "application/json"} if body else {}
        answer = httpx.request(
            self.command, self.upstream + self.path, content=body, headers=headers, timeout=120
        )
        content = answer.content
        if answer.status_code == 200 and self.path.endswith("completions"):
            data = answer.json()
            for choice in data["choices"]:
                if "text" in choice:
                    choice["text"] = HOSTILE + choice["text"]
                else:
                    choice["message"]["content"] = HOSTILE + (choice["message"]["content"] or "")
            content = json.dumps(data).encode()
        self.send_response(answer.status_code)
        self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hostile_endpoint(served_tiny_model) -> Iterator[str]:
    """An OpenAI-compatible `/v1` base URL whose model writes `<script>` and other HTML."""
    handler = type(
        "Hostile", (_HostileModel,), {"upstream": served_tiny_model.endpoint_url.removesuffix("/v1")}
    )
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------------------------
# Helpers: the operator's command, which models are deployed, what the tester does
# ---------------------------------------------------------------------------------------------------------


def operator_invite(service: ServiceFixture, name: str) -> str:
    """`guanaco admin invite --name NAME` against the service's store: the link it prints."""
    env = {
        "GUANACO_HOME": str(service.log_path.parent),
        "GUANACO_DATABASE_URL": service.store.url,
        "GUANACO_BETA_PAGE_ENABLED": "true",
    }
    result = CliRunner().invoke(app, ["admin", "invite", "--name", name, "--url", service.url], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def token_of(link: str) -> str:
    return parse_qs(urlparse(link).query)["invite"][0]


def user_of(service: ServiceFixture, link: str) -> str:
    with service.store.session() as session:
        return invite_user_id(invite_for_token(session, token_of(link)))


def deploy_only(
    service: ServiceFixture, endpoint_url: str, *developers_and_repos: tuple[str, str]
) -> list[str]:
    """Make these the only deployed models (one submission per (developer key, repo)), on `endpoint_url`."""
    with service.store.session() as session:
        deployed = session.scalars(select(Submission.id).where(Submission.status == Status.DEPLOYED)).all()
        for submission_id in deployed:
            transition(session, submission_id, Status.INACTIVE)
    return [
        service.deployed_submission(key, endpoint_url, "tiny-llama", repo)
        for key, repo in developers_and_repos
    ]


def open_and_consent(page: Page, link: str) -> None:
    page.goto(link)
    expect(page.locator("#consent-notice")).to_contain_text("shared anonymised with model developers")
    expect(page.locator("#consent-button")).to_be_disabled()
    page.check("#consent-box")
    page.click("#consent-button")
    expect(page.locator("#app-view")).to_be_visible()


def send(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")


def replies(page: Page, log: str):
    return page.locator(f"#{log} .msg.bot:not(.pending) .text")


# ---------------------------------------------------------------------------------------------------------
# The tester's journey
# ---------------------------------------------------------------------------------------------------------


def test_a_tester_chats_with_a_routed_model_and_the_developer_reads_their_thumbs_down(
    page_service, served_tiny_model, page, shots
):
    (submission_id,) = deploy_only(
        page_service, served_tiny_model.endpoint_url, (page_service.alice_key, "alice/web")
    )
    link = operator_invite(page_service, "Ada Lovelace")

    open_and_consent(page, link)
    send(page, "Hello! Tell me a story, please.")

    expect(replies(page, "chat-log")).to_have_count(1)
    with page_service.store.session() as session:
        conversation = session.scalar(
            select(Conversation).where(Conversation.user_id == user_of(page_service, link))
        )
        assert conversation.submission_id == submission_id
        stored_reply = session.scalars(
            select(Message.content).where(Message.conversation_id == conversation.id, Message.sender == "bot")
        ).one()
    assert replies(page, "chat-log").text_content() == stored_reply
    expect(page.locator("#who")).to_contain_text("Invited as Ada Lovelace")
    page.check("input[name=thumbs][value=down]")
    page.fill("#feedback-text", "Too short, and it forgot what I asked.")
    page.screenshot(path=shots / "chat-phone.png", full_page=True)
    page.click("#feedback-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("your feedback was sent")

    with page_service.client(page_service.alice_key) as developer:
        seen = developer.get(f"/feedback/{submission_id}").json()
    (record,) = seen["feedback"].values()
    assert (seen["thumbs_up"], seen["thumbs_down"]) == (0, 1)
    assert record["text"] == "Too short, and it forgot what I asked." and record["thumbs_up"] is False
    # Developers see text with control characters removed and personal details masked.
    as_developers_see = mask_pii(clean_text(stored_reply))
    assert [m["content"] for m in record["messages"]] == [
        "Hello! Tell me a story, please.",
        as_developers_see,
    ]
    shown_user = record["messages"][0]["sender"]["uid"]
    assert "Lovelace" not in json.dumps(seen) and user_of(page_service, link) not in shown_user


def test_model_text_that_looks_like_html_is_shown_as_text(page_service, hostile_endpoint, page):
    deploy_only(page_service, hostile_endpoint, (page_service.bob_key, "bob/html"))
    open_and_consent(page, operator_invite(page_service, "Grace"))

    send(page, "Hi <b>there</b>")

    expect(replies(page, "chat-log")).to_have_count(1)
    assert replies(page, "chat-log").text_content().startswith(HOSTILE.strip())
    assert page.locator("#chat-log .msg.user .text").text_content() == "Hi <b>there</b>"
    assert page.locator("#chat-log script, #chat-log img, #chat-log b").count() == 0
    assert page.evaluate("window.pwned === undefined")


def test_the_page_shows_the_routes_error_when_no_model_is_deployed(page_service, page):
    deploy_only(page_service, "http://127.0.0.1:9/v1")
    open_and_consent(page, operator_invite(page_service, "Linus"))

    send(page, "Anyone there?")

    expect(page.locator("#status")).to_have_text(
        "No model could be started: no model is deployed for beta users right now. "
        "Try again in a few minutes."
    )
    expect(page.locator("#status")).to_have_class(re.compile(r"\berror\b"))
    assert page.input_value("#message") == "Anyone there?"  # nothing the tester typed is lost


def test_a_tester_fights_a_battle_regenerates_a_side_votes_and_sees_who_was_who(
    page_service, served_tiny_model, page, shots
):
    endpoint = served_tiny_model.endpoint_url
    pair = deploy_only(
        page_service, endpoint, (page_service.alice_key, "alice/left"), (page_service.bob_key, "bob/right")
    )
    link = operator_invite(page_service, "Barbara")
    page.set_viewport_size(DESKTOP)
    open_and_consent(page, link)
    page.click("#mode-battle")

    send(page, "What is your favourite colour?")
    expect(replies(page, "battle-log-a")).to_have_count(1)
    expect(replies(page, "battle-log-b")).to_have_count(1)
    page.click("#regenerate-a")
    expect(page.locator("#status")).to_have_text("Model A answered again.")
    page.click("#vote button[data-winner=a]")

    expect(page.locator("#reveal-a")).to_be_visible()
    with page_service.store.session() as session:
        battle = session.scalar(select(Battle).where(Battle.user_id == user_of(page_service, link)))
        vote = session.scalar(select(BattleVote).where(BattleVote.battle_id == battle.id))
        regenerated = session.scalars(
            select(Message.content).where(
                Message.conversation_id == battle.conversation_a_id, Message.regenerated.is_(True)
            )
        ).all()
        sides = {
            side: session.get(Conversation, conversation_id).submission_id
            for side, conversation_id in (("a", battle.conversation_a_id), ("b", battle.conversation_b_id))
        }
        latest_a = session.scalars(
            select(Message.content)
            .where(Message.conversation_id == battle.conversation_a_id, Message.sender == "bot")
            .order_by(Message.id.desc())
        ).first()
    assert vote.winner == "a" and len(regenerated) == 1
    assert set(sides.values()) == set(pair)
    expect(page.locator("#reveal-a")).to_have_text(f"Model A was {sides['a']}")  # its name is its id here
    expect(page.locator("#reveal-b")).to_have_text(f"Model B was {sides['b']}")
    assert replies(page, "battle-log-a").text_content() == latest_a
    expect(page.locator("#vote-result")).to_contain_text("counts" if vote.counted else "not counted")
    expect(page.locator("#vote button").first).to_be_disabled()
    page.screenshot(path=shots / "battle-desktop.png", full_page=True)


@pytest.mark.parametrize("refusal", ["expired", "forged", "revoked"])
def test_an_expired_forged_or_revoked_invite_gets_an_error_page_and_no_access(
    page_service, page, shots, refusal
):
    link = operator_invite(page_service, "Mallory")
    if refusal == "expired":
        with page_service.store.session() as session:
            _, token = create_invite(session, "Mallory", utcnow() - timedelta(minutes=1))
        link = link.replace(token_of(link), token)
    elif refusal == "forged":
        link = link[:-6] + ("AAAAAA" if not link.endswith("AAAAAA") else "BBBBBB")
    else:
        with page_service.store.session() as session:
            invite_id = invite_for_token(session, token_of(link)).id
        env = {
            "GUANACO_HOME": str(page_service.log_path.parent),
            "GUANACO_DATABASE_URL": page_service.store.url,
        }
        assert CliRunner().invoke(app, ["admin", "revoke-invite", invite_id], env=env).exit_code == 0
    cause = {
        "expired": "invite expired on",
        "forged": "invite not recognised",
        "revoked": "invite revoked on",
    }[refusal]

    response = page.goto(link)

    assert response.status == 401
    expect(page.locator("h2")).to_have_text("This invite does not work")
    expect(page.locator("[role=alert] p")).to_contain_text(cause.capitalize())
    assert page.locator("#app-view, #consent-view, textarea").count() == 0
    if refusal == "expired":
        page.screenshot(path=shots / "expired-invite-phone.png", full_page=True)
    with page_service.client(token_of(link)) as tester:
        refused = tester.post("/beta/conversations", json={"user_id": "anyone"})
    assert refused.status_code == 401 and refused.json()["detail"].startswith(cause)


# ---------------------------------------------------------------------------------------------------------
# What an invite may do over HTTP (no browser needed)
# ---------------------------------------------------------------------------------------------------------


def test_an_invite_is_refused_until_consent_and_then_acts_only_as_its_own_tester(
    page_service, served_tiny_model
):
    deploy_only(page_service, served_tiny_model.endpoint_url, (page_service.alice_key, "alice/access"))
    ada_link, bo_link = operator_invite(page_service, "Ada"), operator_invite(page_service, "Bo")
    ada_user = user_of(page_service, ada_link)

    with page_service.client(token_of(ada_link)) as ada, page_service.client(token_of(bo_link)) as bo:
        before_consent = ada.post("/beta/conversations", json={"user_id": ada_user})
        consented = ada.post("/beta/app/consent").json()
        as_someone_else = ada.post("/beta/conversations", json={"user_id": "app-user-1"})
        conversation_id = ada.post("/beta/conversations", json={"user_id": ada_user}).json()[
            "conversation_id"
        ]
        bo.post("/beta/app/consent")
        bo_feedback = bo.post(f"/beta/conversations/{conversation_id}/feedback", json={"thumbs_up": True})
        bo_message = bo.post(f"/beta/conversations/{conversation_id}/messages", json={"message": "hi"})
    with page_service.beta_client() as app_service:
        app_started = app_service.post("/beta/conversations", json={"user_id": "app-user-1"})
    with page_service.client(page_service.alice_key) as developer:
        developer_on_beta = developer.post("/beta/conversations", json={"user_id": "app-user-1"})

    assert before_consent.status_code == 403 and before_consent.json()["detail"].startswith("consent needed")
    assert consented["consented"] is True and consented["user_id"] == ada_user
    assert as_someone_else.status_code == 403
    assert (
        as_someone_else.json()["detail"]
        == f"an invite acts only as its own tester: send user_id '{ada_user}'"
    )
    for refused in (bo_feedback, bo_message):
        assert refused.status_code == 403
        assert refused.json()["detail"] == "this conversation belongs to another tester"
    assert app_started.status_code == 200  # the app's service token still works for any user
    assert developer_on_beta.status_code == 401


@pytest.mark.postgres
def test_the_page_and_invites_do_nothing_until_the_operator_turns_the_page_on(service):
    with service.store.session() as session:
        invite, token = create_invite(session, "Ada", utcnow() + timedelta(days=1))
        invite.consented_at, user_id = utcnow(), invite_user_id(invite)

    page_response = httpx.get(f"{service.url}/beta/app", params={"invite": token}, timeout=30)
    with service.client(token) as tester:
        session_response = tester.get("/beta/app/session")
        beta_response = tester.post("/beta/conversations", json={"user_id": user_id})

    assert page_response.status_code == 404 and "The beta page is off" in page_response.text
    assert session_response.status_code == 404
    assert session_response.json()["detail"].startswith("the beta page is off")
    assert beta_response.status_code == 401
