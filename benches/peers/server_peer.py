"""The peer of `ualign generate` on a server policy: the same request bodies (as ualign
recorded them in candidates.meta), sent one after another with Python's own HTTP client,
to the same OpenAI-compatible server. What ualign adds over a plain client (its checks,
retries, SQLite commits, process start) is the difference in wall time.

    sqlite3 DB "SELECT json_extract(meta, '$.server.request') FROM candidates ORDER BY id" > bodies.jsonl
    python3 benches/peers/server_peer.py http://127.0.0.1:8766/v1 bodies.jsonl

Prints the completion tokens it got (the same as ualign's when the server is asked in the
same order).
"""

import json
import sys
import urllib.request


def main() -> None:
    base, path = sys.argv[1], sys.argv[2]
    tokens = 0
    with open(path) as f:
        bodies = [json.loads(line) for line in f if line.strip()]
    for body in bodies:
        req = urllib.request.Request(
            base.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=300) as resp:
            answer = json.load(resp)
        tokens += answer["usage"]["completion_tokens"]
    print(json.dumps({"requests": len(bodies), "completion_tokens": tokens}))


if __name__ == "__main__":
    main()
