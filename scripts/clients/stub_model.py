"""A stand-in OpenAI-compatible model for the LiteLLM proxy test: answers every chat completion
with a fixed reply and counts the calls that reached it, so the test can tell a refusal at the
proxy from a call that went through.

    python stub_model.py PORT        serves until killed; GET /calls returns {"calls": N}
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

calls = 0
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet: the test prints what matters
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/calls":
            with lock:
                self._reply(200, {"calls": calls})
        elif self.path.rstrip("/").endswith("/models"):
            self._reply(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
        else:
            self._reply(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        global calls
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._reply(404, {"error": {"message": "not found"}})
            return
        with lock:
            calls += 1
        self._reply(
            200,
            {
                "id": f"chatcmpl-stub-{calls}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "stub"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "stub answer"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            },
        )


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
