"""The first turn of a beta conversation, as the submission's formatter lays it out: what the stress test
sends, so it measures (and the output gate judges) the replies users will get."""

from __future__ import annotations

from guanaco_dagster.submissions.formatter import ChatTurn, GenerationParams, PromptFormatter, format_prompt

# (bot name, persona, the user's opening line): short role-play openings like the app's.
OPENINGS = (
    ("Captain Nova", "a cheerful pirate who sails the stars.", "Hello! How are you today?"),
    ("Professor Quill", "a wise old wizard who loves stories.", "Tell me a story, please."),
    ("Whiskers", "a curious cat with many opinions.", "What happened next?"),
    ("Inspector Lane", "a sharp detective in a rainy city.", "Why do you think so?"),
)


def utf8_bytes(text: str) -> int:
    """An upper bound on any tokenizer's count (no token is shorter than a byte) that needs no server."""
    return len(text.encode())


def opening_prompts(formatter: PromptFormatter, params: GenerationParams) -> list[str]:
    """One prompt per opening, within the submission's prompt budget."""
    return [
        format_prompt(
            formatter,
            memory=persona,
            prompt="",
            bot_name=bot_name,
            user_name="User",
            history=[ChatTurn("user", opening)],
            count_tokens=utf8_bytes,
            max_input_tokens=params.max_input_tokens,
        )
        for bot_name, persona, opening in OPENINGS
    ]


def stress_sampling(params: GenerationParams) -> dict[str, object]:
    """The submission's sampling for a streamed stress request (one candidate: the stream is the reply)."""
    return {**params.to_completion_kwargs(), "n": 1}
