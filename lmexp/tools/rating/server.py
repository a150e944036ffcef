"""The rating page: a small Flask app over one session, served on 127.0.0.1 only.

Flask on Werkzeug's threaded server: its handlers are plain functions, so "append the rating and
fsync it before answering" is ordinary code under a lock; several raters are several threads.
Start-up, process start to first answer: Flask 0.35 s, Starlette on uvicorn 0.31 s (median of 5,
benchmarks/rate_server_startup.py, 2026-12), both far below the model loading before it.

    GET  /                 the page (page.html: plain HTML and JavaScript, nothing to build)
    GET  /api/item?rater=  progress and the rater's next item as prompt/left/right texts
    POST /api/rate         {rater, item, choice, comment} → recorded, then the next item as above
"""

from __future__ import annotations

from importlib import resources

from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

from lmexp.errors import ConfigError
from lmexp.tools.rating.session import Session

HOST = "127.0.0.1"  # raters on other machines reach it through an SSH tunnel, never an open port


def create_app(session: Session) -> Flask:
    app = Flask(__name__)
    page = resources.files("lmexp.tools.rating").joinpath("page.html").read_text()

    @app.get("/")
    def index() -> Response:
        return Response(page, mimetype="text/html")

    @app.get("/api/item")
    def item():
        return jsonify(session.view(request.args.get("rater", "")))

    @app.post("/api/rate")
    def rate():
        answer = request.get_json(silent=True)
        if not isinstance(answer, dict):
            raise ConfigError("the rating must be a JSON object {rater, item, choice, comment}")
        session.add_rating(answer.get("rater", ""), answer.get("item"), answer.get("choice"), answer.get("comment", ""))
        return jsonify(session.view(answer["rater"]))

    @app.errorhandler(ConfigError)
    def bad_request(err: ConfigError):
        return jsonify(error=str(err)), 400

    return app


def start_server(session: Session, port: int = 8000) -> BaseWSGIServer:
    """The server, listening on 127.0.0.1:port (0: any free port); run it with serve_forever()."""
    try:
        return make_server(HOST, port, create_app(session), threaded=True)
    except OSError as err:
        raise ConfigError(f"cannot listen on {HOST}:{port} ({err.strerror}); choose another --port") from None
