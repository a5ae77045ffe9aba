"""A small HTTP server on 127.0.0.1 that speaks the real Ollama and OpenAI chat protocols.

``POST /api/chat`` (Ollama: ``{"model", "messages": [{"role", "content", "images": [base64]}],
"stream": false, "options"}`` -> ``{"model", "message": {"role": "assistant", "content"}, "done": true}``)
and ``POST /v1/chat/completions`` (OpenAI: content parts ``text`` + ``image_url`` data URL ->
``{"choices": [{"message": {"role": "assistant", "content"}}]}``). It checks what a real server
checks (known model, an image that decodes), records every request, answers 404 for unknown
models like Ollama does, and can be told to be slow. Bounded: it serves until ``stop()``.
"""
from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

ANSWER = ("A cup of coffee on a white saucer on a wooden table. Quality problems: moderate noise, slight blur "
          "and heavy JPEG artifacts.")


class FakeVLMServer:
    def __init__(self, models: tuple[str, ...] = ("qwen2.5vl:3b",), answer: str = ANSWER, delay: float = 0.0):
        self.models = set(models)
        self.answer = answer
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                entry = {"path": self.path, "body": body, "headers": dict(self.headers)}
                server.requests.append(entry)
                if server.delay:
                    time.sleep(server.delay)
                if body.get("model") not in server.models:
                    if self.path == "/api/chat":
                        return self._reply(404, {"error": f"model '{body.get('model')}' not found, try pulling it first"})
                    return self._reply(404, {"error": {"message": f"model {body.get('model')} does not exist"}})
                try:
                    if self.path == "/api/chat":
                        msg = body["messages"][-1]
                        entry["image"] = Image.open(io.BytesIO(base64.b64decode(msg["images"][0]))).convert("RGB")
                        entry["prompt"] = msg["content"]
                        return self._reply(200, {"model": body["model"], "created_at": "2025-01-01T00:00:00Z",
                                                 "message": {"role": "assistant", "content": server.answer},
                                                 "done": True, "done_reason": "stop"})
                    if self.path == "/v1/chat/completions":
                        parts = body["messages"][-1]["content"]
                        url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
                        head, b64 = url.split(",", 1)
                        assert head.startswith("data:image/")
                        entry["image"] = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")
                        entry["prompt"] = next(p["text"] for p in parts if p["type"] == "text")
                        return self._reply(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                                                 "choices": [{"index": 0, "finish_reason": "stop",
                                                              "message": {"role": "assistant", "content": server.answer}}]})
                except (KeyError, IndexError, StopIteration, AssertionError, OSError, ValueError) as e:
                    return self._reply(400, {"error": f"bad request: {e}"})
                return self._reply(404, {"error": f"no route {self.path}"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "FakeVLMServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
