"""Preprocessing cost as the corpus grows: lmexp's token store against a bare `tokenizers` floor.

For each corpus size, synthetic text is made from the running Python's standard-library sources
(one document per line, as the measurement in README "Large corpora" was made) and preprocessed
by the real lmexp path, `python -m lmexp.tools.prepare`, in a fresh cache, under GNU
`/usr/bin/time -v`: for `byte` and for `bpe` (a tokenizer trained once beforehand, loaded as
tokenizer=pretrained), at each of --procs. Beside each, in the same rounds and alternated with
them, the floor: a bare loop of `tokenizers` encode_batch over the same file, writing numpy
arrays. Every process tokenizes on one core (TOKENIZERS_PARALLELISM=false), so N processes
means N cores.

Printed per run: corpus size, tokens, preprocessing seconds (lmexp's own timer: hashing, reading,
tokenizing, writing; the floor's: its loop), wall seconds of the whole command, MB/s of
preprocessing, peak RSS (GNU time: the largest single process), peak RSS above the baseline (the
same command on a 100 kB corpus), store size, the seconds a second run takes to open the store
(a cache hit); then the ratios: lmexp / floor MB/s, and N processes / 1 process. Medians over
--rounds.

    python benchmarks/data_scale.py --sizes 0.2GB,0.8GB,3.2GB --rounds 3
    python benchmarks/data_scale.py --sizes 5MB --rounds 1        # check the script (~1 min)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"([\d.]+)\s*([kmg]b)", text.strip().lower())
    if not match:
        raise SystemExit(f"--sizes: '{text}' is not a size like 200MB or 0.8GB")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def make_corpus(path: Path, size: int) -> None:
    """`size` bytes of Python source lines, the standard library repeated as often as needed."""
    from lmexp.data.sources import python_stdlib_files

    if path.exists() and path.stat().st_size == size:
        return
    sources = [Path(f).read_bytes() for f in python_stdlib_files()]
    with open(path, "wb") as out:
        written = 0
        while written < size:
            for raw in sources:
                piece = raw[: size - written]
                out.write(piece)
                written += len(piece)
                if written >= size:
                    break


def train_bpe(directory: Path, corpus: Path) -> None:
    """A 4096-token BPE trained once on the first 20 MB (not timed): the bpe runs' tokenizer."""
    from lmexp.data.tokenizers import build_tokenizer

    if (directory / "tokenizer.json").exists():
        return
    with open(corpus, encoding="utf-8", errors="replace") as f:
        lines = f.read(20 * 10**6).splitlines()
    build_tokenizer("bpe", texts=lines, vocab_size=4096).save_pretrained(str(directory))


def floor(corpus: Path, tokenizer_json: Path, out: Path) -> None:
    """The floor: read lines in batches, encode them with bare `tokenizers`, write numpy arrays."""
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    start = time.perf_counter()
    tokens = 0
    with open(corpus, encoding="utf-8", errors="replace") as f, open(out, "wb") as sink:
        batch: list[str] = []
        for line in f:
            if line.strip():
                batch.append(line.rstrip("\n"))
            if len(batch) == 1000:
                ids = np.concatenate([np.asarray(e.ids, dtype=np.uint16) for e in encode(batch, add_special_tokens=False)])
                ids.tofile(sink)
                tokens += len(ids)
                batch = []
        if batch:
            ids = np.concatenate([np.asarray(e.ids, dtype=np.uint16) for e in encode(batch, add_special_tokens=False)])
            ids.tofile(sink)
            tokens += len(ids)
    print(f"floor: {tokens} tokens in {time.perf_counter() - start:.3f} s")


def timed(command: list[str], env: dict) -> dict:
    """Run under GNU time -v: wall seconds, peak RSS and the command's own output."""
    result = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", result.stderr).group(1)
    wall = sum(float(part) * 60**i for i, part in enumerate(reversed(clock.split(":"))))
    return {"rss_gb": rss_kb * 1024 / 1e9, "wall_s": wall, "stdout": result.stdout}


def run_lmexp(corpus: Path, tokenizer: list[str], procs: int, cache: Path, env: dict) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    command = [sys.executable, "-m", "lmexp.tools.prepare", "data=text_files", f"data.train_files={corpus}",
               "data.document=line", *tokenizer, f"data.num_proc={procs}", f"paths.cache_dir={cache}"]
    result = timed(command, env)
    out = result["stdout"]
    result["seconds"] = float(re.search(r"built in ([\d.]+) s", out).group(1))
    result["tokens"] = sum(int(n.replace(",", "")) for n in re.findall(r": ([\d,]+) tokens", out))
    store = Path(re.search(r"built in [\d.]+ s: (\S+)", out).group(1))
    result["store_mb"] = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e6
    # The same command again: a cache hit, which opens the store (start-up must not grow with it).
    again = subprocess.run(command, env=env, capture_output=True, text=True)
    result["open_s"] = float(re.search(r"cache hit in ([\d.]+) s", again.stdout).group(1))
    shutil.rmtree(cache, ignore_errors=True)
    return result


def run_floor(corpus: Path, tokenizer_json: Path, work: Path, env: dict) -> dict:
    out = work / "floor.bin"
    result = timed([sys.executable, __file__, "--floor", str(corpus), str(tokenizer_json), str(out)], env)
    match = re.search(r"floor: (\d+) tokens in ([\d.]+) s", result["stdout"])
    result["tokens"], result["seconds"] = int(match.group(1)), float(match.group(2))
    result["store_mb"] = out.stat().st_size / 1e6
    result["open_s"] = float("nan")
    out.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="0.2GB,0.8GB,3.2GB", help="corpus sizes, e.g. 5MB,0.2GB")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds; medians are printed")
    parser.add_argument("--procs", default="1,2", help="data.num_proc values")
    parser.add_argument("--tokenizers", default="byte,bpe")
    parser.add_argument("--no-floor", action="store_true",
                        help="lmexp only (e.g. peak RSS at the largest size, where the floor adds hours)")
    parser.add_argument("--work", default="/tmp/lmexp-data-scale", help="corpora, tokenizers and caches go here")
    parser.add_argument("--floor", nargs=3, metavar=("CORPUS", "TOKENIZER_JSON", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor(*map(Path, args.floor))
        return
    if not Path("/usr/bin/time").exists():
        raise SystemExit("needs GNU time: apt-get install time")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    procs = [int(p) for p in args.procs.split(",")]

    from lmexp.data.tokenizers import build_tokenizer

    byte_dir, bpe_dir = work / "byte-tokenizer", work / "bpe-tokenizer"
    build_tokenizer("byte").save_pretrained(str(byte_dir))
    largest = work / f"corpus-{max(sizes)}.txt"
    make_corpus(largest, max(sizes))
    train_bpe(bpe_dir, largest)
    tokenizers = {"byte": (["tokenizer=byte"], byte_dir / "tokenizer.json"),
                  "bpe": (["tokenizer=pretrained", f"tokenizer.name_or_path={bpe_dir}"], bpe_dir / "tokenizer.json")}

    tiny = work / "corpus-baseline.txt"
    make_corpus(tiny, 100_000)
    baseline = {name: run_lmexp(tiny, tokenizers[name][0], 1, work / "cache", env)["rss_gb"]
                for name in args.tokenizers.split(",")}
    print("baseline peak RSS (100 kB corpus): " + ", ".join(f"{k} {v:.2f} GB" for k, v in baseline.items()))

    header = (f"{'corpus':>8} {'tokenizer':>9} {'run':>9} {'tokens':>14} {'prep s':>8} {'wall s':>8} {'MB/s':>7} "
              f"{'peak RSS':>9} {'above base':>10} {'store MB':>9} {'open s':>7} {'vs floor':>8} {'vs 1 proc':>9}")
    rows = []
    for size in sizes:
        corpus = work / f"corpus-{size}.txt"
        make_corpus(corpus, size)
        for name in args.tokenizers.split(","):
            overrides, tokenizer_json = tokenizers[name]
            runs: dict[str, list[dict]] = {}
            for _ in range(args.rounds):  # alternated: floor, then each process count
                if not args.no_floor:
                    runs.setdefault("floor", []).append(run_floor(corpus, tokenizer_json, work, env))
                for n in procs:
                    runs.setdefault(f"lmexp x{n}", []).append(run_lmexp(corpus, overrides, n, work / "cache", env))
            medians = {label: {key: statistics.median(r[key] for r in results)
                               for key in ("seconds", "wall_s", "rss_gb", "tokens", "store_mb", "open_s")}
                       for label, results in runs.items()}
            for label, m in medians.items():
                m["mbps"] = size / 1e6 / m["seconds"]
            one = medians.get("lmexp x1")
            for label, m in medians.items():
                vs_floor = f"{m['mbps'] / medians['floor']['mbps']:.2f}x" if "floor" in medians else ""
                vs_one = f"{m['mbps'] / one['mbps']:.2f}x" if one and label.startswith("lmexp") else ""
                above = f"{m['rss_gb'] - baseline[name]:.2f}GB" if label.startswith("lmexp") else ""
                rows.append(f"{size / 1e6:>6.0f}MB {name:>9} {label:>9} {int(m['tokens']):>14,} {m['seconds']:>8.1f} "
                            f"{m['wall_s']:>8.1f} {m['mbps']:>7.2f} {m['rss_gb']:>7.2f}GB {above:>10} "
                            f"{m['store_mb']:>9.0f} {m['open_s']:>7.2f} {vs_floor:>8} {vs_one:>9}")
                print(rows[-1], flush=True)
    print("\n" + header)
    print("\n".join(rows))
    print("\nMB/s: corpus MB / preprocessing seconds (lmexp's own timer, the floor's loop); wall: the whole command "
          "with imports. Peak RSS: GNU time's maximum resident set size, the largest single process (with N "
          "processes each worker holds about one shard).")


if __name__ == "__main__":
    main()
