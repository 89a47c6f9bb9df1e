"""Beta chats for `auto` submissions: a conversation as chat messages that the model's own chat template
lays out (vLLM's chat endpoint), within the submission's prompt budget.

The bot's persona (memory) goes in a system message with the example chat (prompt) as context; the turns
are user and assistant messages. Replies stop where the model's template and generation config say (its
end-of-turn tokens), not at the formatter's stopping words, which belong to string templates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from guanaco_dagster.beta.model_client import ModelClient
from guanaco_dagster.submissions.chat_template import turn_messages
from guanaco_dagster.submissions.formatter import ChatTurn, GenerationParams, fit_conversation


def persona_message(*, memory: str, prompt: str, bot_name: str, user_name: str) -> str:
    """The system message: who the bot is, its persona, and its example chat as context."""
    parts = [f"You are {bot_name}, chatting with {user_name}.", memory.strip()]
    if prompt.strip():
        parts.append(f"Example conversation:\n{prompt.strip()}")
    return "\n\n".join(part for part in parts if part)


def model_chat_messages(
    *, memory: str, prompt: str, bot_name: str, user_name: str, history: Sequence[ChatTurn]
) -> list[dict[str, str]]:
    """The conversation as chat messages; consecutive turns of one sender become one message, because many
    templates refuse roles that do not alternate (a user may write twice when a reply failed)."""
    messages = [
        {
            "role": "system",
            "content": persona_message(memory=memory, prompt=prompt, bot_name=bot_name, user_name=user_name),
        }
    ]
    for message in turn_messages(history):
        if messages[-1]["role"] == message["role"]:
            messages[-1] = {**message, "content": messages[-1]["content"] + "\n" + message["content"]}
        else:
            messages.append(message)
    return messages


def chat_sampling(params: GenerationParams) -> dict[str, object]:
    """The submission's sampling for the chat endpoint: the model's own stop tokens, not stopping words."""
    return {name: value for name, value in params.to_completion_kwargs().items() if name != "stop"}


@dataclass(frozen=True)
class FittedChat:
    """The messages sent, and the prompt the model's template made of them."""

    messages: list[dict[str, str]]
    prompt_tokens: list[int]


def fit_model_chat(
    client: ModelClient,
    *,
    memory: str,
    prompt: str,
    bot_name: str,
    user_name: str,
    history: Sequence[ChatTurn],
    max_input_tokens: int,
) -> FittedChat:
    """The conversation's messages, shortened as `format_prompt` shortens a prompt until the model's
    template makes at most `max_input_tokens` tokens of them (counted by the model's server)."""
    tokens_by_messages: dict[str, list[int]] = {}

    def messages_of(memory: str, prompt: str, turns: Sequence[ChatTurn]) -> list[dict[str, str]]:
        return model_chat_messages(
            memory=memory, prompt=prompt, bot_name=bot_name, user_name=user_name, history=turns
        )

    def tokens_of(messages: list[dict[str, str]]) -> list[int]:
        key = json.dumps(messages)
        if key not in tokens_by_messages:
            tokens_by_messages[key] = client.tokenize_chat(messages)
        return tokens_by_messages[key]

    fitted = fit_conversation(
        memory=memory,
        prompt=prompt,
        history=history,
        fits=lambda *parts: len(tokens_of(messages_of(*parts))) <= max_input_tokens,
    )
    messages = messages_of(*fitted)
    return FittedChat(messages, tokens_of(messages))
