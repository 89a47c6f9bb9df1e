"""Prompt formatting: template validation, safe substitution, truncation, and sampling parameters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from guanaco_dagster.submissions.formatter import ChatTurn, GenerationParams, PromptFormatter, format_prompt

try:
    from hypothesis import given
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a dev extra; the property tests at the end need it
    given = None


def count_words(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def render(
    history: list[ChatTurn], *, memory: str = "Kind.", prompt: str = "Hi.", budget: int = 10_000
) -> str:
    return format_prompt(
        PromptFormatter(),
        memory=memory,
        prompt=prompt,
        bot_name="Ava",
        user_name="Sam",
        history=history,
        count_tokens=count_words,
        max_input_tokens=budget,
    )


def numbered_turns(count: int) -> list[ChatTurn]:
    """Alternating user/bot turns whose messages say their position: "m0", "m1", ..."""
    return [ChatTurn("user" if i % 2 == 0 else "bot", f"m{i}") for i in range(count)]


# Templates


def test_default_formatter_matches_chai_defaults() -> None:
    formatter = PromptFormatter()
    assert formatter.model_dump() == {
        "memory_template": "{bot_name}'s Persona: {memory}\n####\n",
        "prompt_template": "{prompt}\n<START>\n",
        "bot_template": "{bot_name}: {message}\n",
        "user_template": "{user_name}: {message}\n",
        "response_template": "{bot_name}:",
    }


def test_default_formatter_lays_out_memory_prompt_turns_and_reply_cue() -> None:
    prompt = render(
        [ChatTurn("user", "Hello!"), ChatTurn("bot", "Hi Sam."), ChatTurn("user", "How are you?")]
    )
    assert prompt == (
        "Ava's Persona: Kind.\n####\nHi.\n<START>\nSam: Hello!\nAva: Hi Sam.\nSam: How are you?\nAva:"
    )


@pytest.mark.parametrize(
    ("field", "template", "problem"),
    [
        ("memory_template", "Persona of {bot_name}", "memory_template must contain {memory}"),
        ("prompt_template", "<START>\n", "prompt_template must contain {prompt}"),
        ("bot_template", "{bot_name}:", "bot_template must contain {message}"),
        ("user_template", "{user_name}:", "user_template must contain {message}"),
        ("memory_template", "{{memory}}", "memory_template must contain {memory}"),
        ("memory_template", "{memory} {foo}", "memory_template may not use {foo}"),
        ("response_template", "{bot_name}: {message}", "response_template may not use {message}"),
        ("bot_template", "{} {message}", "bot_template may not use {}"),
        ("bot_template", "{message.upper}", "bot_template may not use {message.upper}"),
        ("user_template", "{message} }", "user_template is not a valid template"),
        ("prompt_template", "{prompt} {", "prompt_template is not a valid template"),
        ("bot_template", "{message!r}", "may not carry a format spec or conversion"),
        ("bot_template", "{message:>10}", "may not carry a format spec or conversion"),
    ],
)
def test_invalid_template_is_rejected_naming_field_and_problem(
    field: str, template: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as error:
        PromptFormatter(**{field: template})
    assert problem in str(error.value)
    assert error.value.errors()[0]["loc"] == (field,)


def test_formatter_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="truncate_by_message"):
        PromptFormatter(truncate_by_message=True)


def test_doubled_braces_in_a_template_render_as_literal_braces() -> None:
    formatter = PromptFormatter(bot_template="{{{bot_name}}} {message}\n")
    prompt = format_prompt(
        formatter,
        memory="",
        prompt="",
        bot_name="Ava",
        user_name="Sam",
        history=[ChatTurn("bot", "hi")],
        count_tokens=count_words,
        max_input_tokens=100,
    )
    assert "{Ava} hi\n" in prompt


def test_names_are_filled_in_every_template() -> None:
    formatter = PromptFormatter(
        memory_template="[{user_name} talks to {bot_name}] {memory}\n",
        prompt_template="{bot_name}/{user_name}: {prompt}\n",
        bot_template="<{bot_name}|{user_name}> {message}\n",
        user_template="<{user_name}|{bot_name}> {message}\n",
        response_template="<{bot_name}|{user_name}>",
    )
    prompt = format_prompt(
        formatter,
        memory="M",
        prompt="P",
        bot_name="Ava",
        user_name="Sam",
        history=[ChatTurn("user", "u"), ChatTurn("bot", "b")],
        count_tokens=count_words,
        max_input_tokens=100,
    )
    assert prompt == "[Sam talks to Ava] M\nAva/Sam: P\n<Sam|Ava> u\n<Ava|Sam> b\n<Ava|Sam>"


@pytest.mark.parametrize(
    "text",
    ["{memory}", "{0}", "{", "}", "{{}}", "a {bot_name} b", "{message!r:>{x}}", "%s %(name)s", "$bot_name"],
)
def test_braces_in_user_text_are_inserted_verbatim(text: str) -> None:
    prompt = format_prompt(
        PromptFormatter(),
        memory=text,
        prompt=text,
        bot_name=text,
        user_name="Sam",
        history=[ChatTurn("user", text)],
        count_tokens=count_words,
        max_input_tokens=1000,
    )
    assert prompt == f"{text}'s Persona: {text}\n####\n{text}\n<START>\nSam: {text}\n{text}:"


def test_chat_turn_rejects_unknown_sender() -> None:
    with pytest.raises(ValueError, match="'system'"):
        ChatTurn("system", "hi")  # type: ignore[arg-type]


# Truncation


def test_prompt_within_budget_keeps_all_turns() -> None:
    history = numbered_turns(6)
    prompt = render(history, budget=count_words(render(history)))
    assert all(f"m{i}\n" in prompt for i in range(6))


def test_over_budget_drops_oldest_turns_first() -> None:
    history = numbered_turns(6)
    full_tokens = count_words(render(history))
    prompt = render(history, budget=full_tokens - 4)  # each turn costs 2 words: two turns must go
    assert "m0\n" not in prompt and "m1\n" not in prompt
    assert all(f"m{i}\n" in prompt for i in range(2, 6))
    assert prompt.startswith("Ava's Persona: Kind.\n####\nHi.\n<START>\nSam: m2\n")


def test_truncated_prompt_fits_the_budget() -> None:
    history = numbered_turns(50)
    for budget in (20, 37, 64, 99):
        assert count_words(render(history, budget=budget)) <= budget


def test_truncation_keeps_the_newest_turn_and_cuts_memory_from_its_end() -> None:
    memory = " ".join(f"fact{i}" for i in range(20))
    prompt = render([ChatTurn("user", "m0"), ChatTurn("user", "newest")], memory=memory, budget=15)
    assert "m0" not in prompt
    assert prompt.endswith("Hi.\n<START>\nSam: newest\nAva:")
    assert "Persona: fact0 fact1" in prompt and "fact19" not in prompt
    assert count_words(prompt) <= 15


def test_truncation_cuts_the_prompt_once_the_memory_is_gone() -> None:
    long_prompt = " ".join(f"example{i}" for i in range(20))
    prompt = render([ChatTurn("user", "newest")], memory="secret persona", prompt=long_prompt, budget=10)
    assert "secret" not in prompt
    assert "example0" in prompt and "example19" not in prompt
    assert prompt.endswith("Sam: newest\nAva:")
    assert count_words(prompt) <= 10


def test_truncation_cuts_the_newest_message_from_its_start_as_a_last_resort() -> None:
    message = " ".join(f"w{i}" for i in range(30))
    prompt = render([ChatTurn("user", message)], memory="", prompt="", budget=10)
    assert "w29\nAva:" in prompt and "w0 " not in prompt
    assert count_words(prompt) <= 10


def test_budget_smaller_than_the_templates_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_input_tokens=2 is too small"):
        render([ChatTurn("user", "hello")], budget=2)


def test_non_positive_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_input_tokens must be at least 1"):
        render([], budget=0)


def test_empty_history_renders_memory_prompt_and_reply_cue() -> None:
    assert render([]) == "Ava's Persona: Kind.\n####\nHi.\n<START>\nAva:"


# Generation parameters


def test_generation_params_defaults() -> None:
    params = GenerationParams()
    assert params.model_dump() == {
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 40,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "stopping_words": ["\n"],
        "max_input_tokens": 1024,
        "max_output_tokens": 64,
        "best_of": 1,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", 2.01),
        ("temperature", float("nan")),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", 0),
        ("top_k", -2),
        ("top_k", 1001),
        ("presence_penalty", -2.5),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -2.5),
        ("frequency_penalty", 2.5),
        ("max_input_tokens", 63),
        ("max_input_tokens", 32769),
        ("max_output_tokens", 0),
        ("max_output_tokens", 2049),
        ("best_of", 0),
        ("best_of", 17),
        ("stopping_words", [""]),
        ("stopping_words", ["x" * 65]),
        ("stopping_words", ["a"] * 17),
    ],
)
def test_out_of_range_generation_param_is_rejected_naming_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as error:
        GenerationParams(**{field: value})
    assert error.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 0.0),
        ("temperature", 2.0),
        ("top_p", 0.01),
        ("top_k", -1),
        ("top_k", 1),
        ("top_k", 1000),
        ("presence_penalty", -2.0),
        ("frequency_penalty", 2.0),
        ("max_input_tokens", 64),
        ("max_input_tokens", 32768),
        ("max_output_tokens", 2048),
        ("best_of", 16),
        ("stopping_words", []),
        ("stopping_words", ["x" * 64] * 16),
    ],
)
def test_boundary_generation_param_is_accepted(field: str, value: object) -> None:
    assert getattr(GenerationParams(**{field: value}), field) == value


def test_generation_params_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="max_length"):
        GenerationParams(max_length=10)


def test_completion_kwargs_use_openai_completions_names() -> None:
    params = GenerationParams(
        temperature=0.7,
        top_p=0.9,
        top_k=-1,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        repetition_penalty=1.13,
        stopping_words=["\n", "User:"],
        max_input_tokens=2048,
        max_output_tokens=100,
        best_of=4,
    )
    assert params.to_completion_kwargs() == {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": -1,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "repetition_penalty": 1.13,
        "stop": ["\n", "User:"],
        "max_tokens": 100,
        "n": 4,
    }


# Properties

if given is not None:
    turn_texts = st.text(alphabet=st.sampled_from("ab {}\n!"), max_size=30)
    turns = st.builds(ChatTurn, st.sampled_from(["user", "bot"]), turn_texts)

    @given(
        history=st.lists(turns, max_size=12),
        memory=turn_texts,
        prompt=turn_texts,
        budget=st.integers(min_value=6, max_value=60),  # the templates alone take 6
    )
    def test_formatted_prompt_never_exceeds_budget_and_ends_with_reply_cue(
        history: list[ChatTurn], memory: str, prompt: str, budget: int
    ) -> None:
        result = render(history, memory=memory, prompt=prompt, budget=budget)
        assert count_words(result) <= budget
        assert result.endswith("\nAva:")


@pytest.mark.parametrize(
    "templates",
    [
        # Chai's bundled formatters (Pygmalion, Vicuna, ChatML) must be accepted as they are.
        {},
        {
            "memory_template": "### Instruction:\n{memory}\n",
            "prompt_template": "### Input:\n{prompt}\n",
            "response_template": "### Response:\n{bot_name}:",
        },
        {
            "memory_template": "<|im_start|>system\n{memory}<|im_end|>\n",
            "prompt_template": "<|im_start|>user\n{prompt}<|im_end|>\n",
            "bot_template": "<|im_start|>assistant\n{bot_name}: {message}<|im_end|>\n",
            "user_template": "<|im_start|>user\n{user_name}: {message}<|im_end|>\n",
            "response_template": "<|im_start|>assistant\n{bot_name}:",
        },
    ],
    ids=["pygmalion", "vicuna", "chatml"],
)
def test_chai_formatters_are_accepted(templates) -> None:
    PromptFormatter(**templates)
