"""lmexp.tools.tables: tables keep every word whole at 80 columns, in a pipe."""

from __future__ import annotations

import io
import re

from rich.console import Console

from lmexp.tools.tables import print_table


def test_no_word_is_split_in_a_narrow_pipe():
    rows = [["claim_adamw_vs_adam_l2", "val/loss lower with optimizer=adamw than with optimizer=adam", "5",
             "Decoupled Weight Decay Regularization (Ilya Loshchilov, Frank Hutter, 2019)"],
            ["gpt2_124m_owt", "8 x A100 40GB (trainer.devices=8, bf16) on config/train_shakespeare_char.py", "3", "Progress measures for grokking via "
             "mechanistic interpretability (2023)"]]
    out = io.StringIO()
    print_table(["claim", "expected", "seeds", "source"], rows, whole={"claim", "seeds"}, free={"expected", "source"},
                console=Console(file=out, width=80))
    cells = " ".join(re.sub(r"[│┃┏┓┗┛┡┩└┘━─┳┻╇┴┬╈]", " ", line) for line in out.getvalue().splitlines()).split()
    for word in " ".join(" ".join(row) for row in rows).split():
        assert word in cells, (word, out.getvalue())
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80, out.getvalue()
