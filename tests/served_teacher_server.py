"""A teacher server for tests: the subsets of vLLM's and SGLang's HTTP APIs a served teacher uses, backed by a tiny
transformers model saved in a folder, so every log-probability it returns is known exactly.

Endpoints: vLLM `GET /v1/models`, `POST /v1/completions` (token-id prompts, `prompt_logprobs`, capped by
`--max-logprobs` with vLLM's 400 message); SGLang `GET /get_model_info`, `POST /generate` (`input_ids`,
`return_logprob`, `logprob_start_len`, `top_logprobs_num`); both `POST /tokenize` and `GET /health`.
`POST /_faults` sets faults for the next requests: `{"status": 500, "count": 2}`, `{"malformed": 1}`,
`{"delay": 0.5}` (every scoring request), `{"max_logprobs": 20}`, `{"die_after": 3}` (the process exits on the 4th
scoring request).

Run: `python -m tests.served_teacher_server MODEL_DIR --port 0 [--max-logprobs 20] [--latency 0.2]`; it prints
`READY <port>` once it listens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


class _State:
    def __init__(self, model_dir, max_logprobs, latency, api_key):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.name, self.max_logprobs, self.latency, self.api_key = model_dir, max_logprobs, latency, api_key
        self.faults = {"status": None, "count": 0, "malformed": 0, "die_after": None}
        self.scored = 0
        self.lock = threading.Lock()

    @torch.no_grad()
    def log_probs(self, row: list[int]) -> torch.Tensor:
        logits = self.model(torch.tensor([row])).logits[0].double()
        return torch.log_softmax(logits, -1)

    def fault(self) -> tuple[int, str] | None:
        """The fault to answer this scoring request with, if any: (status, body)."""
        with self.lock:
            self.scored += 1
            die_after = self.faults["die_after"]
            if die_after is not None and self.scored > die_after:
                os._exit(0)
            if self.faults["count"] > 0:
                self.faults["count"] -= 1
                return self.faults["status"], json.dumps({"error": {"message": "injected failure"}})
            if self.faults["malformed"] > 0:
                self.faults["malformed"] -= 1
                return 200, '{"choices": [ this is not json'
        return None


def _vllm_positions(state: _State, row: list[int], k: int) -> list:
    log_probs = state.log_probs(row)
    positions: list = [None]
    for position in range(1, len(row)):
        dist = log_probs[position - 1]
        order = dist.argsort(descending=True)
        ranks = {int(token): rank + 1 for rank, token in enumerate(order[:k].tolist())}
        actual = row[position]
        ranks.setdefault(actual, int((dist > dist[actual]).sum()) + 1)  # vLLM adds the prompt token itself
        positions.append({str(token): {"logprob": float(dist[token]), "rank": rank, "decoded_token": ""}
                          for token, rank in ranks.items()})
    return positions


def _sglang_positions(state: _State, row: list[int], k: int) -> list:
    log_probs = state.log_probs(row)
    positions: list = [None]
    for position in range(1, len(row)):
        values, tokens = log_probs[position - 1].topk(k)
        positions.append([[float(v), int(t), None] for v, t in zip(values, tokens, strict=True)])
    return positions


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real servers
    state: _State

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if self.state.api_key and self.headers.get("Authorization") != f"Bearer {self.state.api_key}":
            self._send(401, {"error": {"message": "Unauthorized"}})
            return False
        return True

    def do_GET(self):
        if not self._authorised():
            return
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "tiny-teacher", "object": "model",
                                                         "root": self.state.name, "max_model_len": 256}]})
        elif self.path == "/get_model_info":
            self._send(200, {"model_path": self.state.name, "tokenizer_path": self.state.name,
                             "is_generation": True, "weight_version": "default"})
        elif self.path == "/health":
            self._send(200, {})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/_faults":
            with self.state.lock:
                self.state.faults.update({key: body[key] for key in body if key in self.state.faults})
                self.state.latency = body.get("delay", self.state.latency)
                self.state.max_logprobs = body.get("max_logprobs", self.state.max_logprobs)
            self._send(200, {"ok": True})
        elif self.path == "/tokenize":
            tokens = self.state.tokenizer(body["prompt"], add_special_tokens=body.get("add_special_tokens", True))
            self._send(200, {"tokens": tokens["input_ids"], "count": len(tokens["input_ids"]), "max_model_len": 256})
        elif self.path in ("/v1/completions", "/generate"):
            self._score(body)
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def _score(self, body: dict) -> None:
        fault = self.state.fault()
        if self.state.latency:
            time.sleep(self.state.latency)
        if fault is not None:
            self._send(*fault)
            return
        if self.path == "/v1/completions":
            k = body["prompt_logprobs"]
            if k > self.state.max_logprobs:  # vLLM's message and status (VLLMValidationError -> 400)
                message = f"Requested prompt logprobs of {k}, which is greater than max allowed: " \
                          f"{self.state.max_logprobs}"
                self._send(400, {"error": {"message": message, "type": "BadRequestError",
                                           "param": "prompt_logprobs", "code": 400}})
                return
            rows = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
            choices = [{"index": i, "text": "", "prompt_logprobs": _vllm_positions(self.state, row, k)}
                       for i, row in enumerate(rows)]
            self._send(200, {"object": "text_completion", "model": body.get("model"), "choices": choices})
        else:
            rows = body["input_ids"] if isinstance(body["input_ids"][0], list) else [body["input_ids"]]
            k = body["top_logprobs_num"]
            results = [{"text": "", "meta_info": {"input_top_logprobs": _sglang_positions(self.state, row, k)}}
                       for row in rows]
            self._send(200, results if isinstance(body["input_ids"][0], list) else results[0])


class TeacherServer:
    """The server in a subprocess (so a test can kill it): `url`, `set_faults(...)`, `stop()`."""

    def __init__(self, model_dir, *, max_logprobs=20, latency=0.0, api_key=None):
        command = [sys.executable, "-m", "tests.served_teacher_server", str(model_dir), "--port", "0",
                   "--max-logprobs", str(max_logprobs), "--latency", str(latency)]
        if api_key:
            command += ["--api-key", api_key]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        line = self.process.stdout.readline()
        if not line.startswith("READY"):
            self.process.kill()
            raise RuntimeError(f"The test teacher server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def set_faults(self, **faults) -> None:
        import httpx

        httpx.post(self.url + "/_faults", json=faults, timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-logprobs", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _Handler.state = _State(args.model_dir, args.max_logprobs, args.latency, args.api_key)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
