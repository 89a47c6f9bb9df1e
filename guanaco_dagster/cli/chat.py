"""`guanaco chat`: talk to your deployed model as one of the bundled bot personas."""

from __future__ import annotations

from typing import Annotated

import typer

from guanaco_dagster.cli.common import fail, open_client, reports_errors, shown, stderr, stdout
from guanaco_dagster.cli.personas import DEFAULT_PERSONA, Persona, find_persona, persona_names
from guanaco_dagster.submissions.lifecycle import Status

# The most recent messages sent with each turn: the service accepts at most this many (ChatRequest).
HISTORY_LIMIT = 200


def _persona(name: str | None) -> Persona:
    if name is None:
        return DEFAULT_PERSONA
    try:
        return find_persona(name)
    except KeyError:
        raise typer.BadParameter(f"choose one of: {', '.join(persona_names())}", param_hint="--bot") from None


@reports_errors
def chat(
    submission_id: Annotated[str, typer.Argument(help="A deployed submission of yours.")],
    bot: Annotated[str | None, typer.Option(help=f"Bundled persona: {', '.join(persona_names())}.")] = None,
    user_name: Annotated[str, typer.Option(help="Your name in the conversation.")] = "User",
    show_input: Annotated[
        bool, typer.Option("--show-input", help="Print the prompt the model gets.")
    ] = False,
) -> None:
    """Chat with your deployed model as one of the bundled bots; type `exit` (or Ctrl-D) to stop."""
    from guanaco_dagster.cli.client import GuanacoAPIError
    from guanaco_dagster.service.schemas import ChatMessageIn, ChatRequest

    persona = _persona(bot)
    out = stdout()
    with open_client() as client:
        info = client.get_submission(submission_id)
        if info.status != Status.DEPLOYED:
            fail(f"{submission_id} is '{info.status}', not deployed: chat works once it is deployed")
        out.print(
            f"chatting with [bold]{shown(info.model_name)}[/] as {shown(persona.name)} — `exit` to stop"
        )
        history = [ChatMessageIn(sender="bot", message=persona.first_message)]
        out.print(f"[bold cyan]{shown(persona.name)}:[/] {shown(persona.first_message)}", soft_wrap=True)
        while True:
            try:
                line = out.input(f"[bold]{shown(user_name)}:[/] ").strip()
            except (EOFError, KeyboardInterrupt):
                out.print()
                break
            if line.lower() in ("exit", "quit"):
                break
            if not line:
                continue
            history.append(ChatMessageIn(sender="user", message=line))
            request = ChatRequest(
                memory=persona.memory,
                prompt=persona.prompt_for(user_name),
                chat_history=history[-HISTORY_LIMIT:],
                bot_name=persona.name,
                user_name=user_name,
            )
            try:
                with out.status("thinking…"):
                    response = client.chat(submission_id, request)
            except GuanacoAPIError as error:
                if error.status < 500:
                    raise
                history.pop()  # the model was unavailable: let the user send it again
                stderr().print(f"[red]no reply ({shown(error.message, multiline=True)}); try again[/]")
                continue
            if show_input:
                out.print(
                    f"[dim]--- model input ---\n{shown(response.model_input, multiline=True)}\n---[/]",
                    soft_wrap=True,
                )
            out.print(
                f"[bold cyan]{shown(persona.name)}:[/] {shown(response.model_output, multiline=True)}",
                soft_wrap=True,
            )
            history.append(ChatMessageIn(sender="bot", message=response.model_output))
