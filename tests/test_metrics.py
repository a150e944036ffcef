import math

import pytest
import torch

from lmexp.metrics import (
    TokenAccuracy,
    TokenMacroF1,
    TokenNLL,
    TokenPerplexity,
    classification_metrics,
    lm_metrics,
)


def logits_for(preds: list[int], num_classes: int) -> torch.Tensor:
    """Logits whose argmax is ``preds``."""
    return torch.nn.functional.one_hot(torch.tensor(preds), num_classes).float() * 5.0


def nll(row: list[float], target: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[target]


# Two updates of very different sizes and losses: one confidently wrong token, then four
# confidently right ones. The token-weighted mean and the mean of the two batch means differ a lot.
BATCHES = [
    (torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([2])),
    (torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 1.0, 0.0]]), torch.tensor([0, 1, 2, 0])),
]


def token_nlls() -> list[list[float]]:
    return [[nll(row, t) for row, t in zip(logits.tolist(), target.tolist())] for logits, target in BATCHES]


def test_nll_and_perplexity_are_token_weighted():
    per_batch = token_nlls()
    all_tokens = [v for batch in per_batch for v in batch]
    expected = sum(all_tokens) / len(all_tokens)
    mean_of_means = sum(sum(b) / len(b) for b in per_batch) / len(per_batch)
    mean_of_ppls = sum(math.exp(sum(b) / len(b)) for b in per_batch) / len(per_batch)
    assert abs(expected - mean_of_means) > 0.5  # the batches really tell the two apart

    loss, ppl = TokenNLL(), TokenPerplexity()
    for logits, target in BATCHES:
        loss.update(logits, target)
        ppl.update(logits, target)
    assert loss.compute().item() == pytest.approx(expected, rel=1e-5)
    assert ppl.compute().item() == pytest.approx(math.exp(expected), rel=1e-5)
    assert ppl.compute().item() != pytest.approx(mean_of_ppls, rel=1e-2)


def test_accuracy_is_micro():
    acc = TokenAccuracy(num_classes=4)
    acc.update(logits_for([1], 4), torch.tensor([1]))  # batch accuracy 1
    acc.update(logits_for([0, 0, 0], 4), torch.tensor([1, 2, 3]))  # batch accuracy 0
    assert acc.compute().item() == pytest.approx(1 / 4)  # mean of batch means would be 0.5


def test_macro_f1_averages_over_classes_in_targets_or_predictions():
    # target [0, 0, 1, 2, 3], preds [0, 1, 1, 4, 3] over 6 classes:
    #   class 0: tp 1, fn 1 -> 2/3    class 1: tp 1, fp 1 -> 2/3    class 2: fn 1 -> 0
    #   class 3: tp 1       -> 1      class 4: fp 1 (prediction only) -> 0
    #   class 5: in neither -> excluded
    # macro F1 = (2/3 + 2/3 + 0 + 1 + 0) / 5 = 7/15
    f1 = TokenMacroF1(num_classes=6)
    f1.update(logits_for([0], 6), torch.tensor([0]))
    f1.update(logits_for([1, 1, 4, 3], 6), torch.tensor([0, 1, 2, 3]))
    assert f1.compute().item() == pytest.approx(7 / 15)


def test_lm_collection_keys_and_reset():
    metrics = lm_metrics(num_classes=3)
    assert set(metrics.keys()) == {"loss", "perplexity", "acc", "f1"}
    for logits, target in BATCHES:
        metrics.update(logits, target)
    first = {k: v.item() for k, v in metrics.compute().items()}

    metrics.reset()
    logits, target = BATCHES[0]
    metrics.update(logits, target)
    after_reset = metrics.compute()
    assert after_reset["loss"].item() == pytest.approx(token_nlls()[0][0], rel=1e-5)
    assert after_reset["acc"].item() == 0.0
    assert after_reset["loss"].item() != pytest.approx(first["loss"])


def test_full_vocabulary_update_is_small():
    vocab, n = 50257, 512
    torch.manual_seed(0)
    target = torch.randint(0, vocab, (n,))
    preds = torch.where(torch.rand(n) < 0.5, target, torch.randint(0, vocab, (n,)))
    logits = torch.randn(n, vocab)
    logits[torch.arange(n), preds] = 100.0

    metrics = lm_metrics(vocab)
    metrics.update(logits, target)

    state_numel = sum(state.numel() for metric in metrics.values() for state in metric.metric_state.values())
    assert state_numel <= 3 * vocab + 16  # three count vectors for F1, scalars for the rest

    hit = preds == target
    assert metrics["acc"].compute().item() == pytest.approx(hit.float().mean().item())
    classes = set(target.tolist()) | set(preds.tolist())
    tp = {c: 0 for c in classes}
    fp, fn = dict(tp), dict(tp)
    for p, t in zip(preds.tolist(), target.tolist()):
        if p == t:
            tp[t] += 1
        else:
            fp[p] += 1
            fn[t] += 1
    expected_f1 = sum(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in classes) / len(classes)
    assert metrics["f1"].compute().item() == pytest.approx(expected_f1, rel=1e-5)


def split_updates(metrics, logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    for start, stop in [(0, 1), (1, 4), (4, len(target))]:
        metrics.update(logits[start:stop], target[start:stop])
    return {k: v.item() for k, v in metrics.compute().items()}


def test_binary_classification_metrics():
    target = [1, 1, 1, 0, 0, 0, 0, 1, 0, 1]
    preds = [1, 0, 1, 1, 0, 0, 0, 1, 1, 0]
    logits = torch.randn(len(target), 2)
    logits[torch.arange(len(target)), torch.tensor(preds)] += 10.0  # argmax is preds

    got = split_updates(classification_metrics(2), logits, torch.tensor(target))

    pairs = list(zip(preds, target))
    tp, fp = pairs.count((1, 1)), pairs.count((1, 0))
    fn, tn = pairs.count((0, 1)), pairs.count((0, 0))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert got == pytest.approx(
        {
            "acc": (tp + tn) / len(target),
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall),
            "mcc": mcc,
        },
        rel=1e-5,
    )


def test_multiclass_classification_metrics():
    target = [0, 0, 0, 1, 1, 2, 2, 2, 2, 1]
    preds = [0, 1, 0, 1, 2, 2, 2, 0, 2, 1]
    classes = range(3)
    got = split_updates(classification_metrics(3), logits_for(preds, 3), torch.tensor(target))

    pairs = list(zip(preds, target))
    tp = [pairs.count((c, c)) for c in classes]
    n_pred = [preds.count(c) for c in classes]
    n_true = [target.count(c) for c in classes]
    precision = [tp[c] / n_pred[c] for c in classes]
    recall = [tp[c] / n_true[c] for c in classes]
    f1 = [2 * tp[c] / (n_pred[c] + n_true[c]) for c in classes]
    correct, total = sum(tp), len(target)
    mcc = (correct * total - sum(p * t for p, t in zip(n_pred, n_true))) / math.sqrt(
        (total**2 - sum(p * p for p in n_pred)) * (total**2 - sum(t * t for t in n_true))
    )
    assert got == pytest.approx(
        {
            "acc": correct / total,
            "precision": sum(precision) / 3,
            "recall": sum(recall) / 3,
            "f1": sum(f1) / 3,
            "mcc": mcc,
        },
        rel=1e-5,
    )


def test_collection_shares_one_cross_entropy_and_argmax_with_the_same_results():
    torch.manual_seed(0)
    logits, target = torch.randn(64, 7), torch.randint(0, 7, (64,))
    shared = lm_metrics(7)
    shared.update(logits, target)
    alone = {"loss": TokenNLL(), "perplexity": TokenPerplexity(), "acc": TokenAccuracy(7), "f1": TokenMacroF1(7)}
    for name, metric in alone.items():
        metric.update(logits, target)
        assert shared[name].compute().item() == pytest.approx(metric.compute().item(), rel=1e-6)
    assert shared["acc"].compute().item() == pytest.approx((logits.argmax(-1) == target).float().mean().item())
