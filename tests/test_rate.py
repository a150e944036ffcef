"""`lmexp rate`: sessions generated from real runs, the report against hand-computed numbers, and
the rating page driven in a real headless browser."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import SMALL_MODEL, TINY
from lmexp.config import config_dir, register_resolvers
from lmexp.tools.cli import main as lmexp
from lmexp.tools.rating.report import tally, verdict, write_report
from lmexp.tools.rating.session import Session, write_session
from lmexp.train import train
from lmexp.wandb_offline import read_offline_run

GROUP = "rate-test"


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_corpus, cache_dir) -> dict[str, Path]:
    """Three tiny runs on real text: two causal LMs with different tokenizers (char, byte) in one
    W&B group, and a masked LM."""
    root = tmp_path_factory.mktemp("runs")
    data = ["data=text_files", f"data.train_files={small_corpus}/*.txt", *TINY, *SMALL_MODEL["native"]]
    return {name: train_run(root / name, cache_dir, [*data, *overrides]) for name, overrides in {
        "char": ["tokenizer=char", "logger=wandb", f"logger.wandb.group={GROUP}"],
        "byte": ["tokenizer=byte", "logger=wandb", f"logger.wandb.group={GROUP}"],
        "masked": ["tokenizer=char", "objective=masked_lm", "model=bert_tiny"],
    }.items()}


def train_run(run_dir: Path, cache_dir: Path, overrides: list[str]) -> Path:
    """Train a run into run_dir (module-scoped fixtures cannot use make_cfg)."""
    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        train(compose("train", overrides=[f"paths.output_root={run_dir.parent}", f"paths.output_dir={run_dir}",
                                          f"paths.cache_dir={cache_dir}", *overrides]))
    return run_dir


SAMPLING = ["--max-new-tokens", "8", "--temperature", "0.8", "--top-k", "20", "--seed", "3"]


def test_a_session_holds_both_runs_samples_as_generate_makes_them(runs, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("ROMEO:\n\nFirst Citizen:\nKING HENRY:\n")
    session = tmp_path / "session"
    # Batches of 2 here and in generate below: bit-identical samples need the same batch size.
    assert lmexp(["rate", str(runs["char"]), str(runs["byte"]), "--prompts", str(prompts), "--session", str(session),
                  *SAMPLING, "--batch-size", "2"]) == 0
    assert f"rating session: {session} (3 items)" in capsys.readouterr().out
    items = json.loads((session / "items.json").read_text())
    assert [item["prompt"] for item in items] == ["ROMEO:", "First Citizen:", "KING HENRY:"]
    assert (session / "prompts.txt").read_text() == "ROMEO:\nFirst Citizen:\nKING HENRY:\n"
    key = json.loads((session / "key.json").read_text())
    assert key["A"]["name"] == "char" and key["B"]["name"] == "byte"
    assert key["wandb"] == {"project": "lmexp", "group": GROUP} and len(key["secret"]) == 32
    assert key["sampling"] == {"max_new_tokens": 8, "temperature": 0.8, "top_k": 20, "top_p": None, "seed": 3,
                               "stop_at_eos": False}

    # Each run's continuations are exactly what `lmexp generate` prints with the same keys.
    for label, run in [("A", runs["char"]), ("B", runs["byte"])]:
        assert lmexp(["generate", str(run), "--prompt-file", str(session / "prompts.txt"), *SAMPLING,
                      "--batch-size", "2"]) == 0
        printed = capsys.readouterr().out.split("\n" + "-" * 15 + "\n")[:-1]
        assert printed == [item["prompt"] + item[label] for item in items]
    assert all(item["A"] != item["B"] for item in items)

    # A second session into the same folder is refused; nothing is overwritten.
    before = (session / "items.json").read_bytes()
    assert lmexp(["rate", str(runs["char"]), str(runs["byte"]), "--prompts", str(prompts),
                  "--session", str(session)]) == 1
    assert "already holds a rating session" in one_line_error(capsys)
    assert (session / "items.json").read_bytes() == before


def test_default_prompts_are_lines_of_the_runs_validation_split(runs, tmp_path, small_corpus, capsys):
    session = tmp_path / "session"
    assert lmexp(["rate", str(runs["char"]), str(runs["byte"]), "--num-prompts", "5", "--max-new-tokens", "4",
                  "--session", str(session)]) == 0
    prompts = [item["prompt"] for item in json.loads((session / "items.json").read_text())]
    corpus_lines = {line.rstrip() for doc in small_corpus.glob("*.txt") for line in doc.read_text().splitlines()}
    assert len(set(prompts)) == 5 and all(p in corpus_lines and 16 <= len(p.strip()) <= 160 for p in prompts)
    assert "validation split" in json.loads((session / "key.json").read_text())["prompts"]


@pytest.mark.parametrize("args, message", [
    (["{char}", "{masked}"], "{masked} is a masked_lm run; rate needs a causal_lm run"),
    (["{char}", "{byte}", "--prompts", "{missing}"], "--prompts {missing}: No such file or directory"),
    (["{char}", "{byte}", "--prompts", "{empty}"], "--prompts {empty}: the file has no prompts"),
    (["{char}"], "lmexp rate needs two runs, RUN_A and RUN_B; got 1"),
    (["{char}", "{byte}", "--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--report", "{empty_dir}"], "is not a rating session (no items.json)"),
    (["--serve", "{empty_dir}"], "is not a rating session (no items.json)"),
])
def test_bad_input_is_one_line(runs, tmp_path, capsys, args, message):
    names = {**{k: str(v) for k, v in runs.items()}, "missing": str(tmp_path / "missing.txt"),
             "empty": str(tmp_path / "empty.txt"), "empty_dir": str(tmp_path)}
    (tmp_path / "empty.txt").write_text("\n  \n")
    assert lmexp(["rate", *[a.format(**names) for a in args], "--session", str(tmp_path / "s")]) == 1
    assert message.format(**names) in one_line_error(capsys)
    assert not (tmp_path / "s").exists()


# --- the report, against numbers computed by hand -----------------------------------------------

# Each rater's outcome per item (ann answers item 9 twice: the last answer counts).
OUTCOMES = {
    "ann": ["A", "A", "A", "A", "A", "A", "A", "B", "B", "A", "tie"],
    "bob": ["A", "A", "A", "A", "B", "B", "tie", "B", "B", "tie"],
    "cy": ["A", "A", "B", "B", "both_bad", "tie"],
}


def make_session(folder: Path, items: int, group: str | None = GROUP) -> Session:
    prompts = [f"prompt number {i}" for i in range(items)]
    texts = {label: [f"{label.lower()}-text {i} " + "word " * 20 for i in range(items)] for label in "AB"}
    key = {label: {"run": f"run-{label}", "name": f"run-{label}"} for label in "AB"}
    write_session(folder, prompts, texts, {**key, "sampling": {"seed": 1}, "prompts": "test",
                                           "wandb": {"project": "lmexp-test", "group": group}})
    return Session(folder)


def give(session: Session, rater: str, item: int, outcome: str, comment: str = "") -> dict:
    """Answer as a rater would, by side: the side on which this rater sees the wanted generation."""
    choice = outcome if outcome in ("tie", "both_bad") else \
        "left" if session.left_label(rater, item) == outcome else "right"
    return session.add_rating(rater, item, choice, comment)


def wilson(wins: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def two_sided_binomial_p(wins: int, n: int) -> float:
    tail = sum(math.comb(n, k) for k in range(max(wins, n - wins), n + 1)) / 2**n
    return min(1.0, 2 * tail) if wins * 2 != n else 1.0


def test_report_numbers_match_hand_computed_ones(tmp_path):
    session = make_session(tmp_path / "s", items=10)
    for rater, outcomes in OUTCOMES.items():
        items = [*range(len(outcomes) - 1), 9] if rater == "ann" else range(len(outcomes))
        for item, outcome in zip(items, outcomes):
            row = give(session, rater, item, outcome, comment="too short" if (rater, item) == ("bob", 3) else "")
            assert row["outcome"] == outcome

    summary = write_report(tmp_path / "s")
    ann, bob, cy, pooled = (*[summary["raters"][r] for r in ("ann", "bob", "cy")], summary["pooled"])
    assert (ann["A_wins"], ann["B_wins"], ann["ties"], ann["both_bad"], ann["ratings"]) == (7, 2, 1, 0, 10)
    assert ann["A_win_rate"] == pytest.approx(7 / 9)
    assert ann["p_value"] == pytest.approx(92 / 512)  # 2 * (C(9,7) + C(9,8) + C(9,9)) / 2^9
    assert ann["ci95"] == pytest.approx(wilson(7, 9))
    assert (bob["A_wins"], bob["B_wins"], bob["ties"], bob["p_value"]) == (4, 4, 2, pytest.approx(1.0))
    assert (cy["A_wins"], cy["B_wins"], cy["ties"], cy["both_bad"]) == (2, 2, 1, 1)
    assert (pooled["A_wins"], pooled["B_wins"], pooled["ties"], pooled["both_bad"], pooled["decided"]) == (13, 8, 4, 1, 21)
    assert pooled["p_value"] == pytest.approx(two_sided_binomial_p(13, 21))
    assert pooled["ci95"] == pytest.approx(wilson(13, 21))

    # Cohen's kappa, ann/bob over 10 items: observed 7/10, chance (7*4 + 2*4 + 1*2)/100 = 0.38.
    kappas = {tuple(p["raters"]): (p["items"], p["cohen_kappa"]) for p in summary["agreement"]["pairs"]}
    assert kappas[("ann", "bob")] == (10, pytest.approx((0.7 - 0.38) / (1 - 0.38)))
    assert kappas[("ann", "cy")] == (6, pytest.approx(0.0, abs=1e-12))  # observed 2/6 = chance (6*2)/36
    # Fleiss' kappa over items 0-5: mean agreement 4/9, chance (12² + 4² + 1 + 1)/18² = 1/2.
    fleiss = summary["agreement"]["fleiss"]
    assert (fleiss["items"], fleiss["fleiss_kappa"]) == (6, pytest.approx((4 / 9 - 0.5) / 0.5))
    assert summary["verdict"].startswith("no detectable preference at n=21 decided pairs: A won 13 of 21")

    assert json.loads((tmp_path / "s" / "rating.json").read_text())["pooled"] == json.loads(json.dumps(pooled))
    assert (tmp_path / "s" / "rating.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The W&B run: in the runs' group, the summary, and the table of prompt / A / B / votes.
    run = read_offline_run(summary["wandb_dir"])
    assert (run.group, run.job_type, run.project, run.exit_code) == (GROUP, "rating", "lmexp-test", 0)
    assert run.summary["pooled/A_wins"] == 13 and run.summary["verdict"] == summary["verdict"]
    table_file = Path(summary["wandb_dir"]) / "files" / run.history[0]["ratings"]["path"]
    table = json.loads(table_file.read_text())
    rows = {row[0]: dict(zip(table["columns"], row)) for row in table["data"]}
    assert len(rows) == 10 and rows[3]["prompt"] == "prompt number 3" and rows[3]["A"].startswith("a-text 3")
    assert (rows[4]["A wins"], rows[4]["B wins"], rows[4]["ties"], rows[4]["both bad"]) == (1, 1, 0, 1)
    assert (rows[9]["A wins"], rows[9]["ties"]) == (0, 2) and rows[3]["comments"] == "bob: too short"


def test_verdict_in_words():
    names = {"A": "long", "B": "short"}
    assert verdict(tally(["A"] * 15 + ["B"] * 2), names).startswith("A (long) preferred: A won 15 of 17")
    assert verdict(tally(["B"] * 15 + ["A"] * 2 + ["tie"]), names).startswith("B (short) preferred: A won 2 of 17")
    assert verdict(tally(["tie", "both_bad"]), names) == "no decided pairs yet (2 ratings, none preferring A or B)"


def test_a_report_without_ratings_is_one_line(tmp_path, capsys):
    make_session(tmp_path / "s", items=2)
    assert lmexp(["rate", "--report", str(tmp_path / "s")]) == 1
    assert "no ratings yet" in one_line_error(capsys)


def test_serve_listens_on_localhost_until_interrupted(tmp_path):
    """The command itself: prints the page's address, answers there, stops cleanly on Ctrl-C."""
    make_session(tmp_path / "s", items=3)
    # SIG_DFL in the child: a shell's background job (pytest ... &) ignores SIGINT, and Python then
    # never turns it into KeyboardInterrupt.
    process = subprocess.Popen([sys.executable, "-m", "lmexp.tools.cli", "rate", "--serve", str(tmp_path / "s"),
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = process.stdout.readline()
        url = re.search(r"rating page: (http://127\.0\.0\.1:\d+/)", line).group(1)
        with urllib.request.urlopen(url + "api/item?rater=dee") as answered:
            assert json.loads(answered.read())["total"] == 3
        with urllib.request.urlopen(url) as page:
            assert b"Which continuation is better?" in page.read()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


# --- the page, in a real browser ----------------------------------------------------------------

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_MISSING = None if CHROMEDRIVER and CHROMIUM else "needs Debian's chromium and chromium-driver (scripts/browser-up.sh)"
# CI installs the browser (.ci/run): a missing one fails there, never skips.
needs_browser = pytest.mark.skipif(bool(BROWSER_MISSING) and not os.environ.get("CI"), reason=str(BROWSER_MISSING))


@pytest.fixture
def served(tmp_path):
    """A session of 8 items served on a free port of 127.0.0.1 in this process: (session, url)."""
    from lmexp.tools.rating.server import start_server

    session = make_session(tmp_path / "session", items=8)
    server = start_server(session, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield session, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def browser(profile: Path, width: int = 1200, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(driver, element_id: str, text: str, timeout: float = 10) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(expected_conditions.text_to_be_present_in_element((By.ID, element_id), text))


def sign_in(driver, url: str, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    driver.find_element(By.ID, "rater-name").send_keys(name)
    driver.find_element(By.ID, "start").click()
    wait_for(driver, "rater-label", f"rater: {name}")


def shown(driver) -> tuple[str, str, str]:
    from selenium.webdriver.common.by import By

    return tuple(driver.find_element(By.ID, part).text for part in ("prompt", "left", "right"))


@needs_browser
def test_the_page_in_a_real_browser(served, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    session, url = served

    def press(driver, key: str):
        return lambda: ActionChains(driver).send_keys(key).perform()

    ann, bob = browser(tmp_path / "ann"), browser(tmp_path / "bob")
    try:
        sign_in(ann, url, "ann")
        sign_in(bob, url, "bob")  # a second rater, in their own browser, at the same time
        wait_for(ann, "progress", "1 of 8")
        expected = []  # (rater, item, choice, the label of the generation shown on the left)
        answer_ms = []

        def answer(driver, rater: str, choice: str, how) -> None:
            prompt, left, _ = shown(driver)
            item = int(prompt.rsplit(" ", 1)[1])
            label = next(lab for lab in "AB" if session.items[item][lab].strip() == left.strip())
            expected.append((rater, item, choice, label))
            done = session.view(rater)["done"]
            how()
            if done + 1 < 8:
                wait_for(driver, "progress", f"{done + 2} of 8")
            else:
                WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "finished").is_displayed())
            answer_ms.append(int(driver.find_element(By.ID, "status").get_attribute("data-ms")))

        # Three items with the mouse (one with a comment), three with the keyboard; bob in between.
        answer(ann, "ann", "left", lambda: ann.find_element(By.ID, "choose-left").click())
        answer(bob, "bob", "right", lambda: bob.find_element(By.ID, "choose-right").click())
        ann.find_element(By.ID, "comment").send_keys("both ramble")
        answer(ann, "ann", "both_bad", lambda: ann.find_element(By.ID, "choose-both_bad").click())
        answer(ann, "ann", "tie", lambda: ann.find_element(By.ID, "choose-tie").click())
        answer(ann, "ann", "right", press(ann, Keys.ARROW_RIGHT))
        answer(ann, "ann", "left", press(ann, "1"))
        answer(bob, "bob", "tie", press(bob, "3"))
        answer(ann, "ann", "both_bad", press(ann, "4"))
        # Typing a comment does not rate: the keys go into the box.
        ann.find_element(By.ID, "comment").send_keys("12")
        time.sleep(0.3)
        assert ann.find_element(By.ID, "progress").text == "7 of 8"

        ann.refresh()  # the rater comes back: same name, progress kept
        wait_for(ann, "progress", "7 of 8")
        assert ann.find_element(By.ID, "rater-label").text == "rater: ann"
        assert ann.find_element(By.ID, "comment").get_attribute("value") == ""
        answer(ann, "ann", "left", lambda: ann.find_element(By.ID, "choose-left").click())
        answer(ann, "ann", "right", lambda: ann.find_element(By.ID, "choose-right").click())
        wait_for(ann, "progress", "8 of 8")
        assert ann.find_element(By.ID, "finished").is_displayed()
        assert not ann.find_element(By.ID, "rating").is_displayed()
        wait_for(bob, "progress", "3 of 8")
        # What the page holds and gets never says which generation is which run.
        assert session.key["secret"] not in bob.page_source and "run-A" not in bob.page_source
        with urllib.request.urlopen(url + "api/item?rater=bob") as answered:
            assert set(json.loads(answered.read())) == {"rater", "total", "done", "item", "prompt", "left", "right"}
    finally:
        ann.quit()
        bob.quit()

    rows = [json.loads(line) for line in (session.folder / "ratings.jsonl").read_text().splitlines()]
    winner = {"left": lambda label: label, "right": lambda label: "B" if label == "A" else "A"}
    assert [(r["rater"], r["item"], r["choice"]) for r in rows] == [(r, i, c) for r, i, c, _ in expected]
    for row, (_, _, choice, left) in zip(rows, expected):
        assert row["left"] == left
        assert row["outcome"] == winner.get(choice, lambda _: choice)(left)
    assert [r["comment"] for r in rows if r["rater"] == "ann"][:2] == ["", "both ramble"]
    print(f"page answered a rating in {sorted(answer_ms)[len(answer_ms) // 2]} ms (median of {len(answer_ms)}; "
          f"max {max(answer_ms)} ms)")


# --- a real session: two default-size runs, rated by scripted raters in the browser -------------

def more_varied(left: str, right: str) -> str:
    """A rater who dislikes loops: prefers the text with the larger share of distinct word pairs."""
    def varied(text: str) -> float:
        words = text.split()
        pairs = list(zip(words, words[1:]))
        return len(set(pairs)) / len(pairs) if pairs else 0.0
    a, b = varied(left), varied(right)
    return "tie" if abs(a - b) < 0.05 else "left" if a > b else "right"


def more_code_like(left: str, right: str) -> str:
    """A rater who wants Python: prefers the text with the larger share of words that are
    identifiers, keywords or numbers; both bad when neither reaches a third."""
    def code_like(text: str) -> float:
        words = [w.strip("()[]{}:,.'\"=") for w in text.split()]
        return sum(w.isidentifier() or w.isdigit() for w in words) / len(words) if words else 0.0
    a, b = code_like(left), code_like(right)
    if max(a, b) < 1 / 3:
        return "both_bad"
    return "tie" if abs(a - b) < 0.05 else "left" if a > b else "right"


@pytest.mark.slow
@needs_browser
def test_a_real_session_on_two_default_runs(tmp_path, cache_dir, capsys):
    """`lmexp-train` (250 steps) against the same with 50 steps: 40 default prompts, three scripted
    raters in three browsers (two rules and a seeded coin), the report. LMEXP_RATE_DEMO_DIR=folder
    keeps the runs, the session and a screenshot of the page (rate-page.png) there; runs already
    completed there are reused."""
    import random

    from conftest import read_summary

    from selenium.webdriver.common.action_chains import ActionChains

    from lmexp.tools.rating.server import start_server

    out = Path(os.environ.get("LMEXP_RATE_DEMO_DIR") or tmp_path)
    for steps, extra in [(250, []), (50, ["trainer.max_steps=50", "trainer.val_check_interval=25"])]:
        run_dir = out / f"steps{steps}"
        if not (run_dir / "summary.json").exists() or read_summary(run_dir)["status"] != "completed":
            train_run(run_dir, cache_dir, ["logger.wandb.group=rate-demo", *extra])
    capsys.readouterr()
    session_dir = out / "session"
    shutil.rmtree(session_dir, ignore_errors=True)
    assert lmexp(["rate", str(out / "steps250"), str(out / "steps50"), "--session", str(session_dir),
                  "--max-new-tokens", "60", "--temperature", "0.8", "--top-k", "50"]) == 0
    with capsys.disabled():
        print(capsys.readouterr().out)

    session = Session(session_dir)
    server = start_server(session, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    coin = random.Random(0)
    raters = {"varied": more_varied, "code": more_code_like,
              "coin": lambda left, right: coin.choice(["left", "right", "tie"])}
    keys = {"left": "1", "right": "2", "tie": "3", "both_bad": "4"}
    try:
        for name, rule in raters.items():
            driver = browser(tmp_path / name, width=1100, height=760)
            try:
                sign_in(driver, url, name)
                for n in range(len(session.items)):
                    wait_for(driver, "progress", f"{n + 1} of {len(session.items)}")
                    if name == "varied" and n == 1:
                        driver.save_screenshot(str(out / "rate-page.png"))
                    _, left, right = shown(driver)
                    ActionChains(driver).send_keys(keys[rule(left, right)]).perform()
                    if n + 1 == len(session.items):
                        wait_for(driver, "finished", "thank you")
            finally:
                driver.quit()
    finally:
        server.shutdown()
        server.server_close()
    assert lmexp(["rate", "--report", str(session_dir)]) == 0
    with capsys.disabled():
        print(capsys.readouterr().out)
    summary = json.loads((session_dir / "rating.json").read_text())
    assert summary["pooled"]["ratings"] == 3 * len(session.items) == 120
    assert set(summary["raters"]) == set(raters)
