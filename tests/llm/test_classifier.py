"""The seed's classifier API end to end on a tiny random BERT: train, evaluate, save, load."""

import json

import numpy as np
import pytest
import torch

from linklm import UserError
from linklm.cli import main
from linklm.llm import EmbeddingClassifier, PromptClassifier, VanillaClassifier

from .conftest import TINY

FAST = {"max_train_pairs": 64, "batch_size": 32, "eval_batch_size": 64, "evals_per_epoch": 1}


@pytest.mark.parametrize(
    "cls,kw", [(VanillaClassifier, {}), (PromptClassifier, {"kge": True}), (EmbeddingClassifier, {"kge": True})]
)
def test_train_and_evaluate(tiny, tmp_path, cls, kw):
    ml, gen = tiny
    kw = {**kw, "kge": gen} if kw.get("kge") else kw
    clf = cls(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "clf", TINY, **kw, **FAST)
    dataset = ml.generate_vanilla_dataset(clf.tokenize_function)
    assert {"prompt", "input_ids", "token_type_ids"} <= set(dataset["train"].column_names)
    # the dataset's ids are those of tokenising its prompt
    row = dataset["val"][0]
    assert row["input_ids"] == clf.tokenizer(row["prompt"])["input_ids"]
    metrics = clf.train_model_on_data(dataset, epochs=2, batch_size=32)
    assert len(metrics["val_history"]) == 2 and 0 <= metrics["val_auc"] <= 1
    best = metrics["val_history"][0]  # selection: a later evaluation must beat it by the margin
    for row in metrics["val_history"][1:]:
        best = row if row["eval_auc"] > best["eval_auc"] + clf.config.selection_margin else best
    assert metrics["val_auc"] == best["eval_auc"], "best epoch by val"
    result = clf.evaluate_model(dataset, split="test")
    assert set(result) >= {"accuracy", "auc", "f1", "confusion_matrix"}
    # accuracy is read at the cut that the selected val evaluation found best, not at 0.5
    assert clf.threshold == metrics["threshold"] == best["eval_threshold"]
    labels, scores = clf.predict(dataset, "test")
    assert result["accuracy"] == pytest.approx(np.mean((scores > clf.threshold) == labels))
    assert np.sum(result["confusion_matrix"]) == dataset["test"].num_rows
    steps = [json.loads(line) for line in (tmp_path / "clf" / "train_log.jsonl").read_text().splitlines()]
    assert steps and {"step", "loss", "accuracy"} <= set(steps[0])
    assert not (tmp_path / "clf" / "checkpoints").exists()

    again = cls(ml.llm_df, ml.source_df, ml.target_df, tmp_path / "again", TINY, **kw, **FAST)
    again.load_pretrained(tmp_path / "clf" / "model")
    assert again.evaluate_model(None, "val") == clf.evaluate_model(None, "val")


def test_end_to_end_trains_the_gnn_and_leaves_the_cache_alone(tiny, tmp_path):
    ml, gen = tiny
    before = {k: v.clone() for k, v in gen.model.state_dict().items()}
    table = gen.kge_table("train")[0].clone()
    clf = EmbeddingClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path, TINY, kge=gen, end_to_end=True, **FAST)
    clf.train_model_on_data(None, epochs=1)
    changed = [k for k, v in clf.model.gnn.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "gradients reached the GNN"
    assert all(torch.equal(v, before[k]) for k, v in gen.model.state_dict().items())
    assert torch.equal(gen.kge_table("train")[0], table)
    assert (tmp_path / "model" / "gnn.safetensors").is_file()


def test_prompt_too_long_fails_before_training(tiny, tmp_path):
    ml, gen = tiny
    gen_big = type(gen).__new__(type(gen))
    gen_big.__dict__.update(gen.__dict__)
    gen_big.config = type(gen.config)(**{**gen.config.__dict__, "kge_dim": 400})
    users, movies = gen.kge_table("train")
    big = {s: {gen.user_type: users.repeat(1, 100), gen.movie_type: movies.repeat(1, 100)} for s in gen.tables}
    gen_big.tables = big
    with pytest.raises(UserError, match=r"largest dimension that fits is \d+"):
        PromptClassifier(ml.llm_df, ml.source_df, ml.target_df, tmp_path, TINY, kge=gen_big)


def test_cli_train_writes_test_metrics(tmp_path, capsys):
    from synthetic import write_layout

    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    args = [f"data.path={folder}", f"llm.model={TINY}", "llm.max_train_pairs=64", "llm.batch_size=32",
            "gnn.epochs=3", "gnn.kge_dim=4", "--run", "t"]  # fmt: skip
    assert main(["train", "--model", "vanilla", *args]) == 0
    assert main(["train", "--model", "embedding", *args]) == 0
    results = json.loads((tmp_path / "runs" / "t" / "results.json").read_text())
    for kind in ("vanilla", "embedding_frozen", "embedding_e2e"):
        m = results["models"][kind]
        assert 0 <= m["test_accuracy"] <= 1 and 0 <= m["test_auc"] <= 1 and 0 <= m["test_f1"] <= 1
    assert "[vanilla] test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "steps, evals, expected", [(63, 2, [32, 63]), (63, 3, [21, 42, 63]), (4, 2, [2, 4]), (1, 2, [1])]
)
def test_val_evaluations_are_evenly_spaced_and_none_repeats_the_last(tmp_path, steps, evals, expected):
    """Which steps the HF Trainer's own flow evaluates under our arguments: `evals` of them, the last
    at the last step (the Trainer always evaluates it), never two in a row at the end."""
    from transformers.trainer_callback import DefaultFlowCallback, TrainerControl, TrainerState

    from linklm.llm.training import TrainSpec, _arguments, eval_interval

    spec = TrainSpec(epochs=1, positives_per_batch=8, eval_batch_size=8, lr=1e-4, weight_decay=0.0, warmup_ratio=0.0,
                     seed=0, checkpoint_every=0, cpu=True, precision="fp32", progress=False, key="k",
                     evals_per_epoch=evals)  # fmt: skip
    args = _arguments(spec, tmp_path, eval_interval(spec, steps), "none")
    state = TrainerState(max_steps=steps, eval_steps=args.eval_steps, logging_steps=args.logging_steps,
                         save_steps=args.save_steps)  # fmt: skip
    evaluated = []
    for step in range(1, steps + 1):
        state.global_step = step
        if DefaultFlowCallback().on_step_end(args, state, TrainerControl()).should_evaluate:
            evaluated.append(step)
    assert evaluated == expected


def test_a_later_evaluation_replaces_the_kept_one_only_beyond_the_margin(tmp_path):
    from transformers.trainer_callback import TrainerState

    from linklm.llm.training import KeepBest

    model = torch.nn.Linear(2, 1)
    keep = KeepBest(tmp_path / "best", margin=0.001)
    state = TrainerState()
    for step, auc in enumerate([0.9000, 0.9008, 0.9012, 0.9015]):
        state.global_step = step
        keep.on_evaluate(None, state, None, metrics={"eval_auc": auc}, model=model)
    assert keep.best["step"] == 2 and keep.best["eval_auc"] == 0.9012  # 0.9008 and 0.9015: within the margin
    assert KeepBest(tmp_path / "best", margin=0.0).best["step"] == 2  # what a resumed run reads back
