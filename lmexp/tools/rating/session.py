"""A rating session on disk: what the raters see, the sealed key, and the ratings as they come.

    <session>/
      items.json     [{"prompt": ..., "A": ..., "B": ...}, ...]: each prompt and the two generations
      prompts.txt    the prompts, one a line (what `lmexp generate RUN --prompt-file` reads)
      key.json       sealed: which run is A and which is B, the sampling settings, the runs' W&B
                     project and group, and the secret that draws each rater's left/right order;
                     the page never gets any of it
      ratings.jsonl  one line per rating, appended and fsynced as it is given

A rater sees an item's generations as "left" and "right"; which of A and B is on the left is drawn
per rater and item from the secret (the same on every reload). The server turns the rater's
left/right answer into A/B; the page only ever receives texts.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from pathlib import Path

from lmexp.errors import ConfigError, cannot_write

CHOICES = ("left", "right", "tie", "both_bad")  # what a rater answers
OUTCOMES = ("A", "B", "tie", "both_bad")  # what it means, once left/right is unsealed
MAX_RATER_NAME = 40


def write_session(folder: str | os.PathLike[str], prompts: list[str], generations: dict[str, list[str]],
                  key: dict) -> Path:
    """Write a new session folder: items.json, prompts.txt and key.json (with a fresh secret).
    `generations` maps "A" and "B" to one text per prompt; `key` says which run each label is."""
    folder = Path(folder)
    check_new(folder)
    items = [{"prompt": p, "A": a, "B": b} for p, a, b in zip(prompts, generations["A"], generations["B"], strict=True)]
    files = {
        "items.json": json.dumps(items, indent=1, ensure_ascii=False),
        "prompts.txt": "".join(p + "\n" for p in prompts),
        "key.json": json.dumps({**key, "secret": secrets.token_hex(16)}, indent=1),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():  # each under a temporary name, then renamed: never half a file
            temporary = folder / f".{name}.tmp"
            temporary.write_text(text)
            temporary.replace(folder / name)
    except OSError as err:
        raise cannot_write(folder, "the rating session", err) or err
    return folder


def check_new(folder: Path) -> None:
    """A session is never written over another one."""
    if (folder / "items.json").exists():
        raise ConfigError(f"{folder} already holds a rating session; choose another --session folder")


def read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path.parent} is not a rating session (no {path.name}); make one with "
                          f"`lmexp rate RUN_A RUN_B`") from None
    except ValueError as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); the {what} is damaged") from None


def read_ratings(folder: Path) -> list[dict]:
    """Every rating in the order given (a rater who answered an item twice has two lines; the last counts)."""
    path = folder / "ratings.jsonl"
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise ConfigError(f"{path}:{number}: not a JSON rating line") from None
    return rows


class Session:
    """One session folder, served to any number of raters at once (thread-safe)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.items: list[dict] = read_json(self.folder / "items.json", "list of items")
        self.key: dict = read_json(self.folder / "key.json", "sealed key")
        self._lock = threading.Lock()
        self._rated: dict[str, set[int]] = {}
        for row in read_ratings(self.folder):
            self._rated.setdefault(row["rater"], set()).add(row["item"])

    def left_label(self, rater: str, item: int) -> str:
        """"A" or "B": the generation this rater sees on the left for this item."""
        digest = hashlib.sha256(f"{self.key['secret']}\0{rater}\0{item}".encode()).digest()
        return "AB"[digest[0] & 1]

    def view(self, rater: str) -> dict:
        """What the page shows this rater next: progress and the next unrated item as left/right texts."""
        rater = check_rater(rater)
        with self._lock:
            rated = self._rated.get(rater, set())
            remaining = [i for i in range(len(self.items)) if i not in rated]
        view = {"rater": rater, "total": len(self.items), "done": len(self.items) - len(remaining)}
        if remaining:
            item = remaining[0]
            left = self.left_label(rater, item)
            right = "B" if left == "A" else "A"
            view.update(item=item, prompt=self.items[item]["prompt"], left=self.items[item][left],
                        right=self.items[item][right])
        return view

    def add_rating(self, rater: str, item: int, choice: str, comment: str = "") -> dict:
        """Record one answer: appended to ratings.jsonl and on disk (fsync) before this returns."""
        rater = check_rater(rater)
        if not isinstance(item, int) or not 0 <= item < len(self.items):
            raise ConfigError(f"item must be an item number from 0 to {len(self.items) - 1}, got {item!r}")
        if choice not in CHOICES:
            raise ConfigError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        left = self.left_label(rater, item)
        outcome = {"left": left, "right": "B" if left == "A" else "A"}.get(choice, choice)
        row = {"rater": rater, "item": item, "choice": choice, "left": left, "outcome": outcome,
               "comment": str(comment or "").strip(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        path = self.folder / "ratings.jsonl"
        with self._lock:
            try:
                with open(path, "a") as f:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as err:
                raise cannot_write(path, "a rating", err) or err
            self._rated.setdefault(rater, set()).add(item)
        return row


def check_rater(name: str) -> str:
    name = str(name or "").strip()
    if not name or len(name) > MAX_RATER_NAME or not name.isprintable():
        raise ConfigError(f"the rater name must be 1 to {MAX_RATER_NAME} printable characters, got {name!r}")
    return name
