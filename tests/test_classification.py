"""objective=classification: labelled data, the classifier head, pretrain → fine-tune with
model=from_run, the label mapping in run and checkpoint, confusion matrices, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import expect_config_error, SHARED_DATA, SMALL_MODEL, TINY
from lmexp.config import config_dir, register_resolvers
from lmexp.data.classification import example_encoder
from lmexp.data.labelled import TrecQuestions
from lmexp.data.tokenizers import build_tokenizer
from lmexp.errors import ConfigError
from lmexp.evaluate import evaluate
from lmexp.objectives.classification import class_weight_tensor
from conftest import read_summary
from lmexp.train import train
from lmexp.wandb_offline import find_offline_runs, read_offline_run

METRICS = ["acc", "f1", "precision", "recall", "mcc"]
CLASSIFY = ["objective=classification", "tokenizer=byte", "data.max_length=48"]
WORDS = {"positive": ["great", "lovely", "superb"], "negative": ["awful", "boring", "dull"],
         "neutral": ["average", "plain", "usual"]}


def write_reviews(path: Path, n: int, labels: list[str]) -> Path:
    """`n` rows of `text,label`: the label's words in a fixed sentence, labels cycling."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "stars"])
        for i in range(n):
            label = labels[i % len(labels)]
            writer.writerow([f"the film was {WORDS.get(label, ['odd'] * 3)[i % 3]}, truly {i % 7}", label])
    return path


@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reviews")
    labels = sorted(WORDS)
    write_reviews(root / "train.csv", 240, labels)
    write_reviews(root / "dev.csv", 48, labels)
    write_reviews(root / "test.csv", 36, labels)
    write_reviews(root / "surprise.csv", 12, ["shocked"])  # a label no model was trained on
    return root


def review_data(root: Path) -> list[str]:
    return ["data=labelled_files", f"data.train_files={root}/train.csv", f"data.val_files={root}/dev.csv",
            f"data.test_files={root}/test.csv", "data.text_columns=[review]", "data.label_column=stars"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, cache_dir, small_corpus):
    """pretrained(model) → the directory of a 2-step LM run of that model (made once per module)."""
    register_resolvers()
    root = tmp_path_factory.mktemp("pretrained")
    objectives = {"gpt_tiny": "causal_lm", "bert_tiny": "masked_lm", "hf_bert": "masked_lm"}
    runs: dict[str, Path] = {}

    def make(model: str) -> Path:
        if model not in runs:
            size = SMALL_MODEL["hf_bert" if model == "hf_bert" else "native"]
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                cfg = compose("train", overrides=[
                    f"paths.output_root={root}", f"paths.output_dir={root / model}", f"paths.cache_dir={cache_dir}",
                    *TINY, "trainer.max_steps=2", "trainer.val_check_interval=2", "data=text_files",
                    f"data.train_files={small_corpus}/*.txt", "tokenizer=byte", f"model={model}", *size,
                    f"objective={objectives[model]}",
                ])
            train(cfg)
            runs[model] = root / model
        return runs[model]
    return make


def backbone_weights(ckpt: Path, prefix: str) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def test_label_mapping_round_trips_through_the_checkpoint(make_cfg, tmp_path, reviews):
    train(make_cfg([*TINY, *CLASSIFY, *review_data(reviews), *SMALL_MODEL["native"], "model=bert_tiny",
                    "logger=wandb", "trainer.limit_val_batches=null", "trainer.limit_test_batches=null"], run="trained"))
    run = tmp_path / "trained"
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["optimized_metric"] == "val/acc"
    assert summary["test_split"] == "test.csv"
    for stage in ("val", "test"):
        assert all(0 <= summary["metrics"][f"{stage}/{m}"] <= 1 or m == "mcc" for m in METRICS)
    labels = ["negative", "neutral", "positive"]  # sorted, from the train split
    assert json.loads((run / "labels.json").read_text()) == labels
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["lmexp"]["labels"] == labels

    # Confusion matrices: label names on both axes, every example of the split counted once.
    for stage, size in (("val", 48), ("test", 36)):
        rows = list(csv.reader(open(run / f"confusion_{stage}.csv")))
        assert rows[0][1:] == labels and [r[0] for r in rows[1:]] == labels
        assert sum(int(v) for r in rows[1:] for v in r[1:]) == size
    history = read_offline_run(find_offline_runs(run / "wandb")[0]).history
    assert any("val/confusion" in row for row in history) and any("test/confusion" in row for row in history)

    # The checkpoint alone restores the mapping: evaluation gives the training run's numbers...
    metrics = evaluate(make_cfg([f"ckpt_path={run}"], config_name="eval", run="eval"))
    for key in ("val/acc", "val/f1", "test/acc", "test/f1"):
        assert metrics[key] == pytest.approx(summary["metrics"][key], rel=1e-6), key
    # ...and data with a label the model does not know is refused, naming the label and the file.
    surprise = ["data=labelled_files", f"data.train_files={reviews}/train.csv", f"data.val_files={reviews}/surprise.csv",
                "data.text_columns=[review]", "data.label_column=stars"]
    with pytest.raises(ConfigError, match=r"'shocked'.*surprise\.csv.*checkpoint's 3 labels"):
        evaluate(make_cfg([f"ckpt_path={run}", *surprise], config_name="eval", run="eval2"))


@pytest.mark.parametrize("model", ["gpt_tiny", "bert_tiny", "hf_bert"])
def test_init_from_loads_exactly_the_backbone_weights(make_cfg, tmp_path, reviews, pretrained, model):
    source = pretrained(model)
    # Frozen: after fine-tuning, the backbone must still be bit for bit the pretrained model.
    train(make_cfg([*TINY, *CLASSIFY, *review_data(reviews), "model=from_run", f"model.init_from={source}",
                    "model.freeze_backbone=true"]))
    run = tmp_path / "run"
    assert read_summary(run)["status"] == "completed"
    before = backbone_weights(source / "checkpoints" / "last.ckpt", "model.")
    after = backbone_weights(run / "checkpoints" / "last.ckpt", "model.backbone.")
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name
    head = backbone_weights(run / "checkpoints" / "last.ckpt", "model.head.")
    assert head["weight"].shape[0] == 3
    # The pretraining run's tokenizer came along; the resolved architecture is the source's.
    assert (run / "tokenizer" / "tokenizer.json").read_text() == (source / "tokenizer" / "tokenizer.json").read_text()
    config = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["lmexp"]["config"]
    assert config["model"]["_target_"].startswith("lmexp.models.") and config["model"]["init_from"] == str(source)


def test_init_from_without_freezing_starts_from_the_pretrained_weights(make_cfg, tmp_path, reviews, pretrained):
    from lmexp import build
    from lmexp.runs import init_from

    source = pretrained("bert_tiny")
    cfg = make_cfg([*CLASSIFY, *review_data(reviews), "model=from_run", f"model.init_from={source}"])
    model = build.build_parts(cfg, pretrained=init_from.adopt(cfg)).model
    expected = backbone_weights(source / "checkpoints" / "last.ckpt", "model.")
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)
    assert all(p.requires_grad for p in model.parameters())


def test_init_from_shape_mismatch_names_the_parameter(make_cfg, tmp_path, reviews, pretrained):
    checkpoint = torch.load(pretrained("gpt_tiny") / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["state_dict"]["model.pos_emb.weight"] = torch.zeros(7, 32)
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    with pytest.raises(ConfigError, match=r"model.init_from=.*pos_emb.weight has shape \[7, 32\]"):
        train(make_cfg([*TINY, *CLASSIFY, *review_data(reviews), "model=from_run",
                        f"model.init_from={tmp_path / 'edited.ckpt'}"]))


def test_sst2_slice_fine_tunes_offline_and_beats_the_majority_class(make_cfg, tmp_path):
    train(make_cfg([*TINY, "objective=classification", "data=sst2", f"data.path={SHARED_DATA / 'sst2'}",
                    "data.max_train_examples=2000", "tokenizer=wordpiece", "tokenizer.vocab_size=2000",
                    "model=bert_tiny", *SMALL_MODEL["native"], "data.batch_size=32", "data.eval_batch_size=128",
                    "trainer.max_steps=100", "trainer.val_check_interval=100", "optimizer.lr=3e-3",
                    "scheduler.warmup_steps=10", "trainer.limit_val_batches=null", "trainer.limit_test_batches=null"]))
    summary = read_summary(tmp_path / "run")
    assert summary["test_split"].startswith("dev.tsv (the validation files")
    assert summary["metrics"]["test/acc"] == summary["metrics"]["val/acc"]  # the same labelled split
    majority = 444 / 872  # dev.tsv: 444 positive, 428 negative
    assert summary["metrics"]["val/acc"] > majority + 0.05, summary["metrics"]


@pytest.mark.parametrize("model, size, lr", [("gpt_tiny", "native", 3e-3), ("bag_of_ngrams", "ngrams", 3e-2)])
def test_trec_fine_tunes_offline_and_beats_the_majority_class(make_cfg, tmp_path, model, size, lr):
    train(make_cfg([*TINY, "objective=classification", "data=trec", f"data.path={SHARED_DATA / 'trec'}",
                    "tokenizer=wordpiece", "tokenizer.vocab_size=1000", f"model={model}", *SMALL_MODEL[size],
                    "data.batch_size=32", "data.eval_batch_size=128", "trainer.max_steps=80", "trainer.val_check_interval=80",
                    f"optimizer.lr={lr}", "scheduler.warmup_steps=10", "trainer.limit_test_batches=null"]))
    summary = read_summary(tmp_path / "run")
    assert summary["test_split"] == "TREC_10.label"
    majority = 138 / 500  # TREC_10: DESC
    assert summary["metrics"]["test/acc"] > majority + 0.2, summary["metrics"]


def test_trec_fine_labels_and_the_carved_validation_split():
    corpus = TrecQuestions(f"{SHARED_DATA}/trec/train_5500.label", f"{SHARED_DATA}/trec/TREC_10.label",
                           fine=True, split={"val_fraction": 0.1, "test_fraction": 0.0, "seed": 0}).load()
    assert len(set(corpus.splits["train"]["label"]) | set(corpus.splits["validation"]["label"])) == 50
    assert len(corpus.splits["validation"]) + len(corpus.splits["train"]) == 5452
    assert corpus.origins["validation"] == "10% of train_5500.label, carved with data.split.seed=0"
    again = TrecQuestions(f"{SHARED_DATA}/trec/train_5500.label", fine=True,
                          split={"val_fraction": 0.1, "test_fraction": 0.0, "seed": 0}).load()
    assert again.splits["validation"]["text"] == corpus.splits["validation"]["text"]


def test_sentence_pairs_are_joined_and_truncated_longest_first():
    tokenizer = build_tokenizer("byte")
    cls, sep, eos = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.eos_token_id
    encode = example_encoder(tokenizer, max_length=10, label_ids={"no": 0, "yes": 1})
    out = encode({"text": ["ab", "abcdefgh"], "text_pair": ["xyz", "x"], "label": ["yes", "no"]})
    ids = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert out["input_ids"][0] == [cls, *ids("ab"), sep, *ids("xyz"), eos]
    assert out["input_ids"][1] == [cls, *ids("abcdef"), sep, *ids("x"), eos]  # the longer text gave way
    assert out["label"] == [1, 0]


def test_class_weights():
    assert class_weight_tensor(None, [3, 1]) is None
    assert class_weight_tensor("balanced", [30, 10]).tolist() == pytest.approx([40 / 60, 40 / 20])
    assert class_weight_tensor([1.0, 4.0], [3, 1]).tolist() == [1.0, 4.0]
    with pytest.raises(ConfigError, match="objective.class_weights"):
        class_weight_tensor([1.0], [3, 1])


def test_resume_mid_epoch_continues_the_same_example_order(make_cfg, tmp_path, reviews):
    # 240 examples in batches of 64: 4 steps an epoch, so step 6 is mid-way through the second.
    # Dropout on, so the RNG must be restored too; a constant schedule, so max_steps changes no LR.
    common = [*TINY, *CLASSIFY, *review_data(reviews), *SMALL_MODEL["native"], "model.dropout=0.1",
              "data.batch_size=64", "scheduler=constant", "trainer.deterministic=true"]
    train(make_cfg([*common, "trainer.max_steps=10"], run="alone"))
    # Validation (and so the regular checkpoint) runs every 6 steps: last.ckpt must still hold step 10.
    assert torch.load(tmp_path / "alone/checkpoints/last.ckpt", weights_only=True)["global_step"] == 10
    train(make_cfg([*common, "trainer.max_steps=6"], run="first"))
    assert torch.load(tmp_path / "first/checkpoints/last.ckpt", weights_only=True)["global_step"] == 6
    train(make_cfg([*common, "trainer.max_steps=10", f"ckpt_path={tmp_path / 'first'}"], run="resumed"))
    alone = backbone_weights(tmp_path / "alone/checkpoints/last.ckpt", "")
    resumed = backbone_weights(tmp_path / "resumed/checkpoints/last.ckpt", "")
    assert alone.keys() == resumed.keys()
    for name in alone:
        assert torch.equal(alone[name], resumed[name]), name


def test_class_weighted_training_with_train_metrics_runs(make_cfg, tmp_path, reviews):
    train(make_cfg([*TINY, *CLASSIFY, *review_data(reviews), *SMALL_MODEL["native"],
                    "objective.class_weights=balanced", "trainer.max_steps=2", "train_metrics=true"]))
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "completed"
    assert 0.0 <= summary["metrics"]["train/acc"] <= 1.0  # sized by the 3 classes, not the vocabulary


def test_hub_dataset_with_class_labels_and_an_unlabelled_test_split(make_cfg, tmp_path):
    # A local folder read by datasets.load_dataset exactly as a hub data set by name is (offline):
    # GLUE SST-2's shape, int labels with ClassLabel names, a test split labelled -1.
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    repo = tmp_path / "glue_like"
    repo.mkdir()
    for split, n, label in (("train", 60, None), ("validation", 20, None), ("test", 10, -1)):
        rows = {"sentence": [f"a {WORDS['positive' if i % 2 else 'negative'][i % 3]} film" for i in range(n)],
                "label": [label if label is not None else i % 2 for i in range(n)]}
        Dataset.from_dict(rows, features=features).to_parquet(str(repo / f"{split}.parquet"))
    overrides = [*TINY, *CLASSIFY, *SMALL_MODEL["native"], "data=labelled_files", f"data.hub={repo}",
                 "data.text_columns=[sentence]", "trainer.max_steps=2"]
    expect_config_error(make_cfg, overrides, "unlabelled (label -1)", "data.hub_splits")
    train(make_cfg([*overrides, "data.hub_splits.test=null"]))
    summary = read_summary(tmp_path / "run")
    assert summary["status"] == "completed"
    assert json.loads((tmp_path / "run" / "labels.json").read_text()) == ["negative", "positive"]
    # The unlabelled test split is not used: test examples are carved out of train instead.
    assert summary["test_split"] == f"10% of {repo} split 'train', carved with data.split.seed=0"


def test_bad_input_is_one_clear_line(make_cfg, tmp_path, reviews):
    base = [*TINY, *CLASSIFY]  # every check fires before a step is trained
    data = review_data(reviews)
    expect_config_error(make_cfg, [*base, *data, "data.label_column=rating"], "data.label_column", "train.csv", "rating")
    expect_config_error(make_cfg, [*base, *data, f"data.val_files={reviews}/surprise.csv"],
                 "'shocked'", "validation split", "surprise.csv")
    (tmp_path / "ragged.csv").write_text("review,stars\ngood,positive\nbad,negative,extra\n")
    expect_config_error(make_cfg, [*base, *data, f"data.train_files={tmp_path}/ragged.csv"], "ragged.csv", "line 3")
    (tmp_path / "not_a_run").mkdir()
    expect_config_error(make_cfg, [*base, *data, "model=from_run", f"model.init_from={tmp_path / 'not_a_run'}"],
                 "model.init_from=", "not an lmexp run directory")
    (tmp_path / "foreign" / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}}, tmp_path / "foreign" / "checkpoints" / "last.ckpt")
    expect_config_error(make_cfg, [*base, *data, "model=from_run", f"model.init_from={tmp_path / 'foreign'}"],
                 "model.init_from=", "not an lmexp checkpoint")
    # The first token of a causal decoder has seen nothing else: it cannot represent the sequence.
    expect_config_error(make_cfg, [*base, *data, "model=gpt_tiny", "objective.pooling=cls"],
                 "objective.pooling=cls", "causal decoder")
    expect_config_error(make_cfg, [*TINY, "objective=classification", "data=default"],
                 "needs labelled data (data=sst2, trec or labelled_files)", "is unlabelled text")


def test_freeze_backbone_needs_classification(make_cfg, small_corpus, pretrained):
    expect_config_error(make_cfg, [*TINY, "data=text_files", f"data.train_files={small_corpus}/*.txt", "model=from_run",
                            f"model.init_from={pretrained('gpt_tiny')}", "model.freeze_backbone=true"],
                 "model.freeze_backbone=true", "objective=classification")
