"""Chat templates: the one the platform builds from a formatter renders exactly what `format_prompt` builds
(rendered by transformers' own chat-template renderer, the one vLLM calls); which models ship their own;
the `auto` chat format and the per-layout stopping words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from guanaco_dagster.beta.model_template_chat import chat_sampling, model_chat_messages
from guanaco_dagster.cli.presets import FORMATTER_PRESETS
from guanaco_dagster.stages.chat_templates import ships_chat_template, tokenizer_special_prefix
from guanaco_dagster.submissions.chat_format import ChatFormat, resolved_chat_format, uses_model_chat_template
from guanaco_dagster.submissions.chat_template import (
    formatter_chat_template,
    formatter_messages,
    formatter_template_kwargs,
)
from guanaco_dagster.submissions.formatter import ChatTurn, GenerationParams, PromptFormatter, format_prompt

FORMATTERS = {
    **{
        name: PromptFormatter(**preset.layout)
        for name, preset in FORMATTER_PRESETS.items()
        if preset.layout is not None
    },
    "alpaca-like": PromptFormatter(
        memory_template="### Instruction:\n{memory}\n",
        prompt_template="### Input:\n{prompt}\n",
        bot_template="{bot_name}: {message}\n",
        user_template="{user_name}: {message}\n",
        response_template="### Response:\n{bot_name}:",
    ),
    # Text that looks like Jinja, quotes, backslashes, literal braces and non-ASCII stay text.
    "tricky": PromptFormatter(
        memory_template='{{% raw %}} "{bot_name}" \\n {memory} {{{{ x }}}} ✨\t',
        prompt_template="  {prompt}  \n\n",
        bot_template="<{bot_name}|{user_name}>{message}</s>\n",
        user_template="'{message}' — {user_name} 🦙\n",
        response_template="",
    ),
}
HISTORIES = {
    "no turns": [],
    "one user turn": [ChatTurn("user", "Hello!")],
    "bot speaks first": [ChatTurn("bot", "Ahoy!"), ChatTurn("user", "Hi there")],
    "user twice in a row": [ChatTurn("user", "Hi"), ChatTurn("user", "Are you there?")],
    "jinja and braces in messages": [
        ChatTurn("user", "{{ messages }} {% if x %} {bot_name} \\n"),
        ChatTurn("bot", "  spaced reply \n\n"),
        ChatTurn("user", "quotes \"and\" 'these'"),
    ],
}
CONVERSATIONS = {
    "persona and example": ("Vega is the navigation AI.\nShe is precise.", "User: hi\nVega: Hello."),
    "empty memory and prompt": ("", ""),
}


def _render(template: str, messages: list[dict[str, str]], **kwargs: object) -> str:
    rendered, _generation_indices = render_jinja_template([messages], chat_template=template, **kwargs)
    return rendered[0]


@pytest.mark.parametrize("history_name", list(HISTORIES))
@pytest.mark.parametrize("conversation_name", list(CONVERSATIONS))
@pytest.mark.parametrize("formatter_name", list(FORMATTERS))
def test_the_built_template_renders_exactly_what_format_prompt_builds(
    formatter_name: str, conversation_name: str, history_name: str
) -> None:
    formatter = FORMATTERS[formatter_name]
    memory, prompt = CONVERSATIONS[conversation_name]
    history = HISTORIES[history_name]
    expected = format_prompt(
        formatter,
        memory=memory,
        prompt=prompt,
        bot_name="Vega",
        user_name="Sam",
        history=history,
        count_tokens=len,
        max_input_tokens=100_000,
    )
    rendered = _render(
        formatter_chat_template(formatter),
        formatter_messages(memory=memory, prompt=prompt, history=history),
        add_generation_prompt=True,
        **formatter_template_kwargs(bot_name="Vega", user_name="Sam"),
    )
    assert rendered == expected


def test_without_names_the_bot_is_bot_and_the_user_is_user() -> None:
    rendered = _render(
        formatter_chat_template(PromptFormatter()),
        [{"role": "user", "content": "Hi"}],
        add_generation_prompt=True,
    )
    assert rendered == "Bot's Persona: \n####\n\n<START>\nUser: Hi\nBot:"


def test_a_single_system_message_is_the_memory_and_the_prompt_stays_empty() -> None:
    messages = [{"role": "system", "content": "A pirate."}, {"role": "user", "content": "Hi"}]
    rendered = _render(formatter_chat_template(PromptFormatter()), messages, add_generation_prompt=True)
    assert rendered == "Bot's Persona: A pirate.\n####\n\n<START>\nUser: Hi\nBot:"


def test_without_a_generation_prompt_there_is_no_reply_cue() -> None:
    rendered = _render(formatter_chat_template(PromptFormatter()), [{"role": "user", "content": "Hi"}])
    assert rendered.endswith("User: Hi\n")


def test_the_tokenizers_special_prefix_starts_every_prompt() -> None:
    template = formatter_chat_template(PromptFormatter(), prefix="<s>")
    rendered = _render(template, [{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    assert rendered == "<s>Bot's Persona: \n####\n\n<START>\nUser: Hi\nBot:"


def test_a_system_message_among_the_turns_is_refused_with_the_rule() -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "system", "content": "late"}]
    with pytest.raises(Exception, match="system messages first"):
        _render(formatter_chat_template(PromptFormatter()), messages)


def _write_tokenizer(folder: Path, *, adds_bos: bool) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({"<s>": 0, "</s>": 1, "<unk>": 2, "Hello": 3}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if adds_bos:
        tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    return folder


def test_a_tokenizer_that_adds_bos_gets_it_as_the_templates_prefix(tmp_path: Path) -> None:
    assert tokenizer_special_prefix(_write_tokenizer(tmp_path / "bos", adds_bos=True)) == "<s>"
    assert tokenizer_special_prefix(_write_tokenizer(tmp_path / "plain", adds_bos=False)) == ""


@pytest.mark.parametrize(
    ("files", "ships"),
    [
        ({}, False),
        ({"tokenizer_config.json": {"model_max_length": 512}}, False),
        ({"tokenizer_config.json": {"chat_template": ""}}, False),
        ({"tokenizer_config.json": {"chat_template": "{{ messages }}"}}, True),
        ({"tokenizer_config.json": {"chat_template": [{"name": "default", "template": "{{ x }}"}]}}, True),
        ({"chat_template.jinja": "{{ messages }}"}, True),
        ({"chat_template.jinja": ""}, False),
        ({"chat_template.json": {"chat_template": "{{ messages }}"}}, True),
    ],
    ids=[
        "no files",
        "tokenizer config without template",
        "empty template",
        "template in tokenizer config",
        "named templates in tokenizer config",
        "chat_template.jinja",
        "empty chat_template.jinja",
        "chat_template.json",
    ],
)
def test_a_model_ships_a_chat_template_when_transformers_would_load_one(
    tmp_path: Path, files: dict[str, object], ships: bool
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    assert ships_chat_template(tmp_path) is ships


@pytest.mark.parametrize(
    ("requested", "ships", "resolved"),
    [
        (ChatFormat.FORMATTER, True, ChatFormat.FORMATTER),
        (ChatFormat.FORMATTER, False, ChatFormat.FORMATTER),
        (ChatFormat.AUTO, True, ChatFormat.AUTO),
        (ChatFormat.AUTO, False, ChatFormat.FORMATTER_DEFAULT),
        # A redeploy decides again: the developer never chose a formatter.
        (ChatFormat.FORMATTER_DEFAULT, True, ChatFormat.AUTO),
        (None, False, ChatFormat.FORMATTER_DEFAULT),
    ],
)
def test_intake_keeps_a_submitted_formatter_and_otherwise_follows_the_model(
    requested, ships, resolved
) -> None:
    assert resolved_chat_format(requested, ships) == resolved


def test_only_auto_chats_through_the_models_template() -> None:
    assert uses_model_chat_template("auto")
    assert not any(uses_model_chat_template(value) for value in ("formatter", "formatter-default", None))


def test_auto_chats_put_the_persona_and_example_in_one_system_message_and_merge_repeated_senders() -> None:
    messages = model_chat_messages(
        memory="A pirate.",
        prompt="Captain: Arr!",
        bot_name="Captain",
        user_name="Sam",
        history=[ChatTurn("user", "Hi"), ChatTurn("user", "Hello?"), ChatTurn("bot", "Ahoy")],
    )
    assert messages == [
        {
            "role": "system",
            "content": "You are Captain, chatting with Sam.\n\nA pirate.\n\n"
            "Example conversation:\nCaptain: Arr!",
        },
        {"role": "user", "content": "Hi\nHello?"},
        {"role": "assistant", "content": "Ahoy"},
    ]


def test_auto_chats_stop_at_the_models_own_tokens_not_at_stopping_words() -> None:
    sampling = chat_sampling(GenerationParams(stopping_words=["\n"], max_output_tokens=32))
    assert "stop" not in sampling and sampling["max_tokens"] == 32


@pytest.mark.parametrize(
    ("preset", "stops"),
    [("pygmalion", ["\n"]), ("vicuna", ["\nUSER:"]), ("chatml", ["<|im_end|>"]), ("auto", [])],
)
def test_each_layout_stops_where_its_next_turn_begins(preset: str, stops: list[str]) -> None:
    assert list(FORMATTER_PRESETS[preset].stopping_words) == stops
    layout = FORMATTER_PRESETS[preset].layout
    if layout is not None:
        # Where the reply would run on, the next turn's text starts with one of the stopping words.
        formatter = PromptFormatter(**layout)
        next_turn = formatter.bot_template.split("{message}")[1] + formatter.user_template
        assert any(stop in next_turn.replace("{user_name}", "Sam") for stop in stops)
