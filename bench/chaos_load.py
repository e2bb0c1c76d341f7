"""Load for bench/chaos.sh: N live messages, each with a body of its own
("chaos <i>") and an Idempotency-Key of its own, spread over the nodes at
RATE a second. A request refused for the moment (a 503, a 429, a node that is
down) is tried again, on the next node, with the same key, as a careful
client would; a message counts as accepted once one answer is a 202.
Writes the accepted message ids, one a line, to OUT; prints a summary."""
import http.client
import json
import os
import sys
import threading
import time

N = int(os.environ.get("N", "10000"))
RATE = float(os.environ.get("RATE", "1000"))
KEY = os.environ["KEY"]
NODES = os.environ["NODES"].split(",")  # host:port,host:port
OUT = os.environ["OUT"]
THREADS = 16

lock = threading.Lock()
next_i = 0
accepted = {}
tries = {"503": 0, "429": 0, "down": 0, "other": 0}
start = time.monotonic()


def take():
    global next_i
    with lock:
        if next_i >= N:
            return None
        i = next_i
        next_i += 1
    # Paced: message i leaves no earlier than i / RATE seconds in.
    delay = start + i / RATE - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return i


def worker():
    conns = {}
    while (i := take()) is not None:
        body = json.dumps({"to": "+447400123456", "body": f"chaos {i}"})
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json",
                   "Idempotency-Key": f"chaos-{i}"}
        node = i % len(NODES)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            host = NODES[node]
            try:
                c = conns.get(host) or http.client.HTTPConnection(host, timeout=15)
                conns[host] = c
                c.request("POST", "/v1/sms", body, headers)
                r = c.getresponse()
                data = r.read()
                if r.status == 202:
                    with lock:
                        accepted[i] = json.loads(data)["id"]
                    break
                kind = str(r.status) if r.status in (503, 429) else "other"
            except (OSError, http.client.HTTPException):
                conns.pop(host, None)
                kind = "down"
            with lock:
                tries[kind] += 1
            node = (node + 1) % len(NODES)
            time.sleep(0.05)


threads = [threading.Thread(target=worker) for _ in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with open(OUT, "w") as f:
    for i in sorted(accepted):
        f.write(accepted[i] + "\n")
ids = set(accepted.values())
print(f"load: {N} sent, {len(accepted)} accepted ({len(ids)} distinct ids) in "
      f"{time.monotonic() - start:.1f} s; retried after: {tries}")
sys.exit(0 if len(accepted) == N else 1)
