"""Start-up time of the web stacks considered for `lmexp rate --serve`, alternated round by round.

Each round starts, as its own Python process, a one-route app on 127.0.0.1 in each stack (Flask on
Werkzeug's threaded server, which lmexp uses; Starlette on uvicorn, the alternative) and measures
the wall time from the process's start to the first answered request, then stops it. Prints each
round, the medians, and Starlette/uvicorn ÷ Flask.

    python benchmarks/rate_server_startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

APPS = {
    "flask": """
import sys
from flask import Flask
from werkzeug.serving import make_server
app = Flask("bench")
app.get("/")(lambda: "ok")
make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True).serve_forever()
""",
    "starlette+uvicorn": """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_up_seconds(code: str) -> float:
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code, str(port)])
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as answer:
                    assert answer.read() == b"ok"
                return time.perf_counter() - start
            except OSError:
                if process.poll() is not None:
                    raise SystemExit(f"the app exited with {process.returncode}")
                time.sleep(0.01)
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    times: dict[str, list[float]] = {name: [] for name in APPS}
    for n in range(rounds):
        for name, code in APPS.items():
            times[name].append(start_up_seconds(code))
        print(f"round {n + 1}: " + "  ".join(f"{name} {t[-1]:.3f} s" for name, t in times.items()), flush=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    print("median: " + "  ".join(f"{name} {m:.3f} s" for name, m in medians.items()))
    print(f"starlette+uvicorn / flask: {medians['starlette+uvicorn'] / medians['flask']:.2f}")


if __name__ == "__main__":
    main()
