"""A webhook receiver for bench/webhooks.sh: verifies each Standard Webhooks
signature with the official library and counts verified message.delivered events.
GET /count answers the count."""
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

hook = Webhook(os.environ["SECRET"])
lock = threading.Lock()
delivered = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global delivered
        body = self.rfile.read(int(self.headers["content-length"]))
        try:
            event = hook.verify(body, {k.lower(): v for k, v in self.headers.items()})
        except Exception:
            self.send_response(400)
            self.end_headers()
            return
        if event["type"] == "message.delivered":
            with lock:
                delivered += 1
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        payload = json.dumps({"delivered": delivered}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connection attempts under load, and a
    # dropped SYN costs a whole second before the client tries again.
    request_queue_size = 1024


Server(("127.0.0.1", int(os.environ["RECEIVER_PORT"])), Handler).serve_forever()
