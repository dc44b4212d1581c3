"""A loopback chat-completions endpoint that answers every request with one canned message.

Tests use it to play a judge that misbehaves in a chosen way (junk, refusal, truncation).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Canned(BaseHTTPRequestHandler):
    message: dict = {}
    finish_reason = "stop"
    requests: list = []

    def do_POST(self):  # noqa: N802 - the http.server API
        self.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        body = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "judge",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", **self.message},
                        "finish_reason": self.finish_reason,
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve_canned(
    message: dict, finish_reason: str = "stop", requests: list | None = None
) -> tuple[ThreadingHTTPServer, str]:
    """Start the endpoint in a daemon thread; returns the server and its ``/v1`` base URL.

    Request bodies are appended to ``requests`` when given. Call ``server.shutdown()`` after.
    """
    handler = type(
        "Canned",
        (_Canned,),
        {"message": message, "finish_reason": finish_reason,
         "requests": requests if requests is not None else []},
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"
