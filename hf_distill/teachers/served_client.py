"""HTTP client of a served teacher: vLLM's OpenAI-compatible server or SGLang's native API, spoken as documented.

Only the requests a teacher needs are spoken here (the server's facts are quoted in comments, from their sources):

- vLLM: `POST /v1/completions` with `prompt` as token ids (`list[list[int]]` batches several rows), `max_tokens` 1
  and `prompt_logprobs` k. Each choice carries `prompt_logprobs`: one entry per prompt position, `None` at the
  first, else `{token_id: {"logprob", "rank", "decoded_token"}}` holding the top k *and* the prompt token itself
  (so k or k + 1 entries). The server caps k at `--max-logprobs` (default 20) and answers 400 with
  "Requested prompt logprobs of K, which is greater than max allowed: N". `GET /v1/models` lists the served
  models (`id`, `root`); `POST /tokenize` returns `{"tokens", "count", "max_model_len"}`.
- SGLang: `POST /generate` with `input_ids` (a list of rows batches them), `return_logprob`, `logprob_start_len` 0
  and `top_logprobs_num` k; each result's `meta_info.input_top_logprobs` has one entry per input position (`None`
  at the first), a list of `[logprob, token_id, text]`. `GET /get_model_info` gives `model_path` and
  `weight_version`; `POST /tokenize` as above.

Log-probabilities come at temperature 1 (the sampling temperature does not apply to prompt log-probs).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass

import httpx
import torch

from ..errors import HfDistillError

__all__ = ["ServedModelInfo", "ServedTeacherError", "ServedTeacherUnavailable", "ServerClient", "TopKRows"]

SERVER_KINDS = ("vllm", "sglang")
# Statuses worth retrying: rate limiting and server-side failures (a restarting server answers 502/503).
_RETRYABLE_STATUSES = {429, 500, 502, 503, 504}
_MAX_LOGPROBS_MESSAGE = re.compile(r"greater than max allowed: (\d+)")


class ServedTeacherError(HfDistillError, ValueError):
    """A served teacher that cannot teach this student as configured (wrong settings, model or tokenizer)."""


class ServedTeacherUnavailable(HfDistillError, ConnectionError):
    """The teacher's server did not answer usefully after every retry; training stops before the optimizer step."""


@dataclass(frozen=True)
class ServedModelInfo:
    """What the server says it serves: the name requests must use, the model's path or id, and its revision."""

    served_name: str
    model: str
    revision: str | None


@dataclass
class TopKRows:
    """Top-k next-token ids and temperature-1 log-probabilities of one row, `(len(row) - 1, k)` each: entry `p`
    is the distribution that predicts token `p + 1` from tokens `0..p`."""

    token_ids: torch.Tensor
    log_probs: torch.Tensor


class ServerClient:
    """Requests to one teacher server, over a keep-alive connection pool, with retries and backoff.

    Args:
        url (`str`): the server's base URL, e.g. `"http://127.0.0.1:8000"`.
        kind (`str`): `"vllm"` or `"sglang"`.
        api_key (`str`, *optional*): sent as `Authorization: Bearer <key>`.
        timeout (`float`): seconds per request.
        max_retries (`int`): retries after the first try on 429, 5xx, timeouts and connection errors.
        backoff (`float`): first wait in seconds, doubled after each retry.
    """

    def __init__(self, url: str, kind: str, *, api_key=None, timeout=60.0, max_retries=4, backoff=0.5):
        self.url, self.kind = url.rstrip("/"), kind
        self.max_retries, self.backoff = max_retries, backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    # -- transport ----------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, payload: dict | None = None):
        """The decoded JSON answer; retries transient failures, then raises `ServedTeacherUnavailable` naming the
        server and the last status. A 4xx other than 429 is the request's fault and raises at once."""
        last = "no answer"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, path, json=payload)
            except httpx.TimeoutException:
                last = f"timed out after {self._http.timeout.read} s"
                continue
            except httpx.TransportError as error:
                last = f"connection failed ({type(error).__name__}: {error})"
                continue
            if response.status_code in _RETRYABLE_STATUSES:
                last = f"HTTP {response.status_code}: {_error_message(response)}"
                continue
            if response.status_code >= 400:
                raise ServedTeacherRequestError(response.status_code, _error_message(response), self.url + path)
            return _decode(response, self.url + path)
        raise ServedTeacherUnavailable(
            f"The teacher server at {self.url} did not answer {method} {path} after {self.max_retries + 1} tries; "
            f"last: {last}. Check that the server is up (`curl {self.url}/health`), or raise "
            "`ServedTeacher(timeout=..., max_retries=...)`. No optimizer step was taken with missing targets: resume "
            "from the last checkpoint once the server is back."
        )

    # -- endpoints ----------------------------------------------------------------------------------------------

    def model_info(self) -> ServedModelInfo:
        if self.kind == "vllm":
            models = self.request("GET", "/v1/models").get("data") or []
            if not models:
                raise ServedTeacherError(f"The vLLM server at {self.url} lists no model in GET /v1/models.")
            card = models[0]
            return ServedModelInfo(served_name=card["id"], model=card.get("root") or card["id"], revision=None)
        info = self.request("GET", "/get_model_info")
        return ServedModelInfo(served_name=info["model_path"], model=info["model_path"],
                               revision=info.get("weight_version"))

    def tokenize(self, text: str, model: str) -> list[int]:
        answer = self.request("POST", "/tokenize", {"model": model, "prompt": text, "add_special_tokens": False})
        return list(answer["tokens"])

    def top_k(self, rows: list[list[int]], k: int, model: str) -> list[TopKRows]:
        """One batched request for `rows` (token ids); per row, the top-k at every position after the first."""
        if self.kind == "vllm":
            payload = {"model": model, "prompt": rows, "max_tokens": 1, "prompt_logprobs": k, "temperature": 1.0}
            choices = sorted(self.request("POST", "/v1/completions", payload)["choices"], key=lambda c: c["index"])
            positions = [choice["prompt_logprobs"] for choice in choices]
            parsed = [[_vllm_entry(entry, k) for entry in row[1:]] for row in positions]
        else:
            payload = {"input_ids": rows, "sampling_params": {"max_new_tokens": 1, "temperature": 1.0},
                       "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": k}
            answer = self.request("POST", "/generate", payload)
            results = answer if isinstance(answer, list) else [answer]
            positions = [result["meta_info"]["input_top_logprobs"] for result in results]
            parsed = [[_sglang_entry(entry, k) for entry in row[1:]] for row in positions]
        if len(parsed) != len(rows) or any(len(p) != len(r) - 1 for p, r in zip(parsed, rows, strict=False)):
            raise ServedTeacherUnavailable(
                f"The teacher server at {self.url} answered {len(parsed)} rows of log-probs for {len(rows)} rows "
                f"of lengths {[len(r) for r in rows]}: an incomplete answer. Is prefix caching on? vLLM does not "
                "compute prompt log-probs for cached blocks (`--no-enable-prefix-caching`)."
            )
        return [_stack(row, k) for row in parsed]


class ServedTeacherRequestError(ServedTeacherError):
    """The server refused a request (HTTP 4xx other than 429)."""

    def __init__(self, status: int, message: str, where: str):
        super().__init__(f"The teacher server refused {where} with HTTP {status}: {message}")
        self.status, self.server_message = status, message

    @property
    def max_logprobs(self) -> int | None:
        """The server's `--max-logprobs` cap, when this is vLLM's refusal of a larger k."""
        found = _MAX_LOGPROBS_MESSAGE.search(self.server_message)
        return int(found.group(1)) if found else None


def _decode(response: httpx.Response, where: str):
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ServedTeacherUnavailable(
            f"The teacher server answered {where} with HTTP {response.status_code} and a body that is not JSON "
            f"({error}; it starts {response.text[:120]!r}). Is the URL a vLLM/SGLang server, and not a proxy's page?"
        ) from None


def _error_message(response: httpx.Response) -> str:
    """The server's own words: vLLM and SGLang send `{"error": {"message": ...}}` or `{"message": ...}`."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or "(empty body)"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
        if "message" in body:
            return str(body["message"])
    return str(body)[:200]


def _vllm_entry(entry: dict | None, k: int) -> list[tuple[int, float]]:
    # The dict holds the top k by rank plus the prompt token (rank may exceed k): keep ranks 1..k.
    items = sorted(((value["rank"], int(token), value["logprob"]) for token, value in (entry or {}).items()))
    return [(token, logprob) for _, token, logprob in items[:k]]


def _sglang_entry(entry: list | None, k: int) -> list[tuple[int, float]]:
    return [(int(item[1]), float(item[0])) for item in (entry or [])[:k]]


def _stack(row: list[list[tuple[int, float]]], k: int) -> TopKRows:
    """Tensors `(positions, k)`; a position given fewer than k entries is padded with no-mass slots (id 0, -inf)."""
    ids = torch.zeros(len(row), k, dtype=torch.long)
    log_probs = torch.full((len(row), k), float("-inf"))
    for position, entries in enumerate(row):
        if entries:
            ids[position, : len(entries)] = torch.tensor([token for token, _ in entries])
            log_probs[position, : len(entries)] = torch.tensor([value for _, value in entries], dtype=torch.float64)
    return TopKRows(token_ids=ids, log_probs=log_probs)


def api_key_from_env(variable: str | None) -> str | None:
    """The API key held in environment variable `variable` (never the key itself in configs or logs)."""
    if variable is None:
        return None
    key = os.environ.get(variable)
    if not key:
        raise ServedTeacherError(
            f"`api_key_env` is {variable!r}, but that environment variable is unset or empty. Export the server's "
            f"key (`export {variable}=...`) or drop `api_key_env` for a server without `--api-key`."
        )
    return key
