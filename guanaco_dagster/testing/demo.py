"""The end-to-end demo: a sample model goes from a loopback Hub to deployed to its first feedback report;
then a challenger is deployed, simulated users battle the two, and the leaderboard shows both ratings.

Run with `make demo` (or `python -m guanaco_dagster.testing.demo [--exit]`). Nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape
from sqlalchemy import select

from guanaco_dagster.cli.client import GuanacoClient
from guanaco_dagster.cli.console import StageProgress, summary_table, waterfall_table
from guanaco_dagster.cli.feedback import leaderboard_table
from guanaco_dagster.cli.frames import leaderboard_frame
from guanaco_dagster.embedded.platform import EmbeddedPlatform
from guanaco_dagster.settings import load_settings
from guanaco_dagster.store.database import Store
from guanaco_dagster.store.models import Submission
from guanaco_dagster.submissions.developers import issue_key
from guanaco_dagster.submissions.lifecycle import Status
from guanaco_dagster.submissions.submissions import get_submission, transition
from guanaco_dagster.submissions.waterfall import stage_waterfall
from guanaco_dagster.testing.beta_users import simulate_battle_over_http, simulate_user_over_http
from guanaco_dagster.testing.hub_server import HubServer, publish_repo
from guanaco_dagster.testing.sample_model import TinyModelSpec, build_tiny_llama
from guanaco_dagster.testing.watch import (
    wait_for_feedback_readable,
    wait_for_outcome,
    wait_for_summary,
    wait_for_summary_in_dagster,
)

SAMPLE_REPO = "guanaco-demo/tiny-chat-llama"
# The arena's challenger: another seed and less training, so users tend to prefer the first model.
CHALLENGER_REPO = "guanaco-demo/tiny-chat-llama-challenger"
CHALLENGER_SPEC = TinyModelSpec(seed=1, train_steps=100)
# The simulated arena users' latent Bradley–Terry log-strengths: the first model, the challenger.
LATENT_STRENGTHS = (0.7, 0.0)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exit", action="store_true", help="stop everything once the report is written")
    parser.add_argument("--port", type=int, default=3000, help="Dagster UI (dagster-webserver) port")
    parser.add_argument("--service-port", type=int, default=8080, help="Guanaco HTTP service port")
    parser.add_argument("--users", type=int, default=6, help="simulated beta users")
    parser.add_argument("--battles", type=int, default=40, help="simulated arena battles")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for each phase")
    return parser.parse_args()


def _sample_model(home: Path, name: str = "sample-model", spec: TinyModelSpec | None = None) -> Path:
    folder = home / name
    if not (folder / "model.safetensors").exists():
        build_tiny_llama(folder, spec or TinyModelSpec(train_steps=300))
    return folder


def retire_earlier_demo_models(store: Store) -> list[str]:
    """Mark the demo's models still `deployed` from an earlier run in this home `inactive`; their ids.

    Called before the platform starts, so it brings none of them back to serving.
    """
    with store.session() as session:
        earlier = session.scalars(
            select(Submission.id).where(
                Submission.status == Status.DEPLOYED,
                Submission.model_repo.in_((SAMPLE_REPO, CHALLENGER_REPO)),
            )
        ).all()
        for submission_id in earlier:
            transition(session, submission_id, Status.INACTIVE, message="retired by a new demo run")
    return list(earlier)


def run_demo(args: argparse.Namespace, console: Console) -> dict:
    """Start the platform, submit the sample, simulate users, and return the report."""
    settings = load_settings()
    console.rule("[bold]Guanaco demo")
    console.print(f"home: {settings.home}  store: {settings.resolved_database_url}")
    with console.status("building the sample model offline (tiny Llama, tokenizer trained locally)…"):
        publish_repo(settings.home / "hub", SAMPLE_REPO, _sample_model(settings.home))
        challenger = _sample_model(settings.home, "challenger-model", CHALLENGER_SPEC)
        publish_repo(settings.home / "hub", CHALLENGER_REPO, challenger)
    retired = retire_earlier_demo_models(Store(settings.resolved_database_url).migrate())
    if retired:
        # Still deployed, they would take the beta users this run's model needs for its first feedback.
        console.print(
            f"retired {len(retired)} model(s) of an earlier demo in this home: {', '.join(retired)}"
        )
    with HubServer(settings.home / "hub") as hub:
        console.print(f"Hub-protocol server: {hub.endpoint} serving {SAMPLE_REPO}")
        with console.status("starting S3 cache (SeaweedFS), Dagster daemon and webserver…"):
            platform = EmbeddedPlatform(
                settings, webserver_port=args.port, service_port=args.service_port, hf_endpoint=hub.endpoint
            )
            platform.__enter__()
        try:
            console.print(
                f"Dagster UI: [link={platform.webserver_url}]{platform.webserver_url}[/link]   "
                f"S3: {platform.env['GUANACO_S3_ENDPOINT']}"
            )
            report = _journey(platform, settings.home, args, console)
            if not args.exit:
                console.print(
                    f"\nThe Dagster UI stays up at {platform.webserver_url}; Ctrl-C stops everything."
                )
                while True:
                    platform.check_health()
                    time.sleep(1)
            return report
        except KeyboardInterrupt:
            return {}
        finally:
            with console.status("stopping inference servers, Dagster and S3…"):
                platform.__exit__(None, None, None)


def _journey(platform: EmbeddedPlatform, home: Path, args: argparse.Namespace, console: Console) -> dict:
    store = Store(platform.settings.resolved_database_url)
    with store.session() as session:
        _developer, key = issue_key(session, "demo-developer")
    # Through the service, as `guanaco submit` and the app's beta users reach it.
    client = GuanacoClient(platform.service_url or "", key)
    # Like a platform that has been up a little while: its spare model server has imported vLLM.
    with console.status("waiting for the spare model server to import vLLM…"):
        warm_s = platform.wait_until_warm()
    console.print(f"platform warm: a spare model server waits for the first model ({warm_s:.1f} s)")
    submission_id = client.submit({"model_repo": SAMPLE_REPO, "hf_revision": "main"})
    submit_returned_at = datetime.now(UTC)
    with store.session() as session:
        submitted_at = get_submission(session, submission_id).created_at
    console.print(f"\nsubmitted [bold]{SAMPLE_REPO}[/] as [bold]{submission_id}[/]")
    with StageProgress(console) as progress:
        status = wait_for_outcome(store, submission_id, args.timeout, progress.update, platform.check_health)
    with store.session() as session:
        submission = get_submission(session, submission_id)
        reason = submission.failure_reason
    if status == Status.FAILED:
        raise SystemExit(f"submission failed: {reason}")
    console.print(f"[green]deployed[/] — {args.users} simulated beta users start chatting")
    beta = httpx.Client(
        base_url=platform.service_url or "",
        headers={"Authorization": f"Bearer {platform.beta_token}"},
        timeout=args.timeout,
    )
    with beta:
        first = simulate_user_over_http(beta, 0)
        readable_at = wait_for_feedback_readable(client, submission_id, args.timeout)
        readable_s = _since(submit_returned_at, readable_at)
        in_dagster_at = wait_for_summary_in_dagster(platform.dagster_home, submission_id, args.timeout)
        summary_in_dagster_s = _since(submit_returned_at, in_dagster_at)
        _summary, first_summary_at = wait_for_summary(store, submission_id, 1, args.timeout)
        time_to_first_feedback_s = _since(submitted_at, first_summary_at)
        console.print(
            f"first feedback summary {time_to_first_feedback_s:.1f} s after submission "
            f"({'👍' if first.thumbs_up else '👎'} {escape(repr(first.feedback_text))})"
        )
        for user in range(1, args.users):
            simulate_user_over_http(beta, user)
    summary_doc, last_summary_at = wait_for_summary(store, submission_id, args.users, args.timeout)
    # The arena starts only now: every figure above is the first model's alone.
    challenger_id = client.submit({"model_repo": CHALLENGER_REPO, "hf_revision": "main"})
    console.print(f"submitted the challenger [bold]{CHALLENGER_REPO}[/] as [bold]{challenger_id}[/]")
    with store.session() as session:
        rows = stage_waterfall(get_submission(session, submission_id))
    console.print(summary_table(summary_doc["summary"]))
    for sample in summary_doc["sample_conversations"][:2]:
        console.print(
            f"[bold]conversation {sample['conversation_id'][:8]}[/] "
            f"{'👍' if sample['thumbs_up'] else '👎'} {escape(sample['text'])}"
        )
        for message in sample["messages"]:
            console.print(f"  [cyan]{escape(message['sender'])}[/]: {escape(message['content'])}")
    milestones = [
        ("first feedback readable", _since(submitted_at, readable_at)),
        ("first feedback summary", time_to_first_feedback_s),
        ("first summary in Dagster", _since(submitted_at, in_dagster_at)),
    ]
    console.print(waterfall_table(rows, extra=milestones))
    report = {
        "submission_id": submission_id,
        "model_repo": SAMPLE_REPO,
        "status": status,
        "time_to_first_feedback_s": round(time_to_first_feedback_s, 2),
        # From `guanaco submit` returning: the developer reads the first feedback (GET /feedback), and
        # Dagster records the first feedback_summary that counts it.
        "time_to_first_feedback_readable_s": round(readable_s, 2),
        "time_to_first_feedback_summary_s": round(summary_in_dagster_s, 2),
        "time_to_full_summary_s": round((last_summary_at - submitted_at).total_seconds(), 2),
        "platform_warm_s": round(warm_s, 2),
        "stages": [row.__dict__ for row in rows],
        "feedback_summary": summary_doc["summary"],
        "sample_conversations": summary_doc["sample_conversations"],
        "dagster_ui_url": platform.webserver_url,
    }
    report["service_url"] = platform.service_url
    report.update(_arena(platform, store, client, (submission_id, challenger_id), args, console))
    console.print(
        f"\nThe same feedback through the CLI (service at {platform.service_url}):\n"
        f"  guanaco login --url {platform.service_url} --key {key}\n"
        f"  guanaco feedback {submission_id}\n  guanaco status {submission_id}\n  guanaco leaderboard"
    )
    path = home / "demo-report.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    verdict = "[green]within[/]" if time_to_first_feedback_s <= 300 else "[red]over[/]"
    console.print(
        f"time to first feedback: [bold]{time_to_first_feedback_s:.1f} s[/] ({verdict} the 5-minute "
        f"target) — report written to {path}\n"
        f"after `guanaco submit` returned: first feedback readable by the developer in "
        f"[bold]{readable_s:.1f} s[/], its feedback_summary in Dagster in "
        f"[bold]{summary_in_dagster_s:.1f} s[/]"
    )
    return report


def _arena(
    platform: EmbeddedPlatform,
    store: Store,
    client: GuanacoClient,
    submission_ids: tuple[str, str],
    args: argparse.Namespace,
    console: Console,
) -> dict:
    """Once the challenger is deployed: simulated users battle the two models and vote by their latent
    preference; the leaderboard shows the Bradley–Terry ratings beside the thumbs-up ratios."""
    challenger_id = submission_ids[1]
    with StageProgress(console) as progress:
        status = wait_for_outcome(store, challenger_id, args.timeout, progress.update, platform.check_health)
    if status == Status.FAILED:
        with store.session() as session:
            raise SystemExit(f"challenger failed: {get_submission(session, challenger_id).failure_reason}")
    strengths = dict(zip(submission_ids, LATENT_STRENGTHS, strict=True))
    console.print(
        f"[green]challenger deployed[/] — {args.battles} simulated users battle the two models "
        f"(latent strengths {strengths})"
    )
    started = time.monotonic()
    rng = random.Random(0)
    beta = httpx.Client(
        base_url=platform.service_url or "",
        headers={"Authorization": f"Bearer {platform.beta_token}"},
        timeout=args.timeout,
    )
    with beta:
        battles = [
            simulate_battle_over_http(beta, store, user, rng, strengths) for user in range(args.battles)
        ]
        # Thumbs feedback after the arena too, so both models have a thumbs-up ratio beside their rating.
        for user in range(args.users):
            simulate_user_over_http(beta, args.users + user)
    board = client.leaderboard()
    console.print(leaderboard_table(leaderboard_frame(board)))
    console.print(
        f"{sum(b.counted for b in battles)} of {len(battles)} battle votes counted "
        f"in {time.monotonic() - started:.1f} s (votes are drawn before the reveal)"
    )
    return {
        "challenger_submission_id": challenger_id,
        "challenger_repo": CHALLENGER_REPO,
        "latent_strengths": strengths,
        "battles": [vars(battle) for battle in battles],
        "leaderboard": [row.to_dict() for row in board.values()],
    }


def _since(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def main() -> None:
    console = Console()
    run_demo(_parse_args(), console)


if __name__ == "__main__":
    main()
