"""Talk to one deployed model's OpenAI-compatible endpoint (vLLM): count tokens, complete prompts, chat."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx


class ModelUnavailable(RuntimeError):
    """The model's server did not answer usefully.

    `server_failed` is True when the server itself failed (refused, timed out, answered 5xx), as opposed
    to refusing this one request: the service then fails the conversation over to another model.
    """

    def __init__(self, message: str, server_failed: bool = False) -> None:
        super().__init__(message)
        self.server_failed = server_failed


@dataclass(frozen=True)
class Completion:
    text: str
    latency_s: float
    completion_tokens: int
    finish_reason: str | None


# One connection pool for every model call of the process: a client per reply cost ~22 ms of CPU each
# and a fresh TCP connection (benchmarks/bench_service.py). httpx.Client is thread-safe.
# A short connect timeout: a server that does not accept connections is dead, and the user is waiting.
_SHARED_HTTP = httpx.Client(
    timeout=httpx.Timeout(60.0, connect=5.0),
    # Idle connections close before vLLM's own 5 s keep-alive does, so a reused one is never half-closed.
    limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=2.0),
)


class ModelClient:
    """A client for one served model; `endpoint_url` is the server's `/v1` base URL."""

    def __init__(self, endpoint_url: str, model: str, http: httpx.Client | None = None) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.server_url = self.endpoint_url.removesuffix("/v1")
        self.model = model
        self._http = http or _SHARED_HTTP

    def close(self) -> None:
        """Nothing to release: connections stay pooled for the next reply."""

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` by the served model's own tokenizer (vLLM's `/tokenize`)."""
        response = self._post(f"{self.server_url}/tokenize", {"model": self.model, "prompt": text})
        return int(response["count"])

    def tokenize_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """The token ids the model's chat template makes of `messages`, reply cue included (`/tokenize`)."""
        body = {"model": self.model, "messages": messages, "add_generation_prompt": True}
        return list(self._post(f"{self.server_url}/tokenize", body)["tokens"])

    def detokenize(self, tokens: list[int]) -> str:
        """The text of `tokens` by the served model's tokenizer (`/detokenize`)."""
        response = self._post(f"{self.server_url}/detokenize", {"model": self.model, "tokens": tokens})
        return str(response["prompt"])

    def complete(self, prompt: str, **params: object) -> Completion:
        """One completion; with `n > 1` the most likely candidate (highest mean log-probability) wins."""
        n = int(params.get("n", 1) or 1)
        body = {"model": self.model, "prompt": prompt, **params}
        if n > 1:
            body["logprobs"] = 0
        return self._generate("completions", body, n, lambda choice: choice["text"])

    def chat(self, messages: list[dict[str, str]], **params: object) -> Completion:
        """The next assistant message, laid out by the model's chat template (`/v1/chat/completions`); with
        `n > 1` the most likely candidate wins."""
        n = int(params.get("n", 1) or 1)
        body = {"model": self.model, "messages": messages, **params}
        if n > 1:
            body["logprobs"] = True
        return self._generate("chat/completions", body, n, lambda choice: choice["message"]["content"] or "")

    def _generate(self, route: str, body: dict, n: int, text_of: Callable[[dict], str]) -> Completion:
        started = time.perf_counter()
        response = self._post(f"{self.endpoint_url}/{route}", body)
        latency = time.perf_counter() - started
        choices = response.get("choices") or []
        if not choices:
            raise ModelUnavailable(f"{self.model} returned no completion")
        best = max(choices, key=_mean_logprob) if n > 1 else choices[0]
        usage = response.get("usage") or {}
        return Completion(
            text_of(best), latency, int(usage.get("completion_tokens", 0)), best.get("finish_reason")
        )

    def _post(self, url: str, body: dict) -> dict:
        try:
            response = self._http.post(url, json=body)
        except httpx.HTTPError as error:
            raise ModelUnavailable(
                f"{self.model} is unreachable: {error or type(error).__name__}", server_failed=True
            ) from error
        if response.status_code != 200:
            raise ModelUnavailable(
                f"{self.model} answered HTTP {response.status_code}: {response.text[:300]}",
                server_failed=response.status_code >= 500,
            )
        return response.json()


def _mean_logprob(choice: dict) -> float:
    logprobs = choice.get("logprobs") or {}
    # Completions list `token_logprobs`; chat completions list `content` entries with a `logprob` each.
    chat_values = [entry.get("logprob") for entry in logprobs.get("content") or []]
    values = [v for v in logprobs.get("token_logprobs") or chat_values if v is not None]
    return sum(values) / len(values) if values else float("-inf")
