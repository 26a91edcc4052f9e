"""llm.precision: which precision each device trains in, one line and exit code 2 for one it cannot,
and training, validation and test scoring all in the run's precision, recorded in its metrics."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from linklm import UserError
from linklm.cli import main
from linklm.config import Config
from linklm.experiment.pipeline import classifier_key, make_classifier
from linklm.runtime import cpu_has_bf16, resolve_precision

from .conftest import TINY

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
FAST = ["llm.max_train_pairs=64", "llm.batch_size=32", "llm.eval_batch_size=64", "llm.evals_per_epoch=1"]
# bf16 training on every CPU: one without native bf16 is taken for one with it, and oneDNN emulates
# the bf16 kernels (the same code path, slower; seconds for these tiny models)
needs_bf16 = pytest.mark.usefixtures("bf16_cpu")


@pytest.fixture
def bf16_cpu(monkeypatch):
    if not cpu_has_bf16():
        _cpu_bf16(monkeypatch, True)


def _cpu_bf16(monkeypatch, native: bool) -> None:
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: native, raising=False)


@pytest.mark.parametrize(
    "requested, native, expected",
    [("auto", True, "bf16"), ("auto", False, "fp32"), ("fp32", True, "fp32"), ("fp32", False, "fp32"),
     ("bf16", True, "bf16"), ("bf16", False, None), ("fp16", True, None), ("fp16", False, None)],
)  # fmt: skip
def test_cpu_precision(monkeypatch, requested, native, expected):
    _cpu_bf16(monkeypatch, native)
    assert cpu_has_bf16() is native
    if expected is None:
        with pytest.raises(UserError, match="config key llm.precision"):
            resolve_precision(requested, CPU, "llm.precision")
    else:
        assert resolve_precision(requested, CPU, "llm.precision") == expected


@pytest.mark.parametrize(
    "requested, bf16, expected",
    [("auto", True, "bf16"), ("auto", False, "fp16"), ("fp16", True, "fp16"), ("fp16", False, "fp16"),
     ("bf16", True, "bf16"), ("bf16", False, None), ("fp32", False, "fp32")],
)  # fmt: skip
def test_gpu_precision(monkeypatch, requested, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    if expected is None:
        with pytest.raises(UserError, match="no bf16"):
            resolve_precision(requested, CUDA, "llm.precision")
    else:
        assert resolve_precision(requested, CUDA, "llm.precision") == expected


@pytest.mark.parametrize("precision, native", [("fp16", True), ("bf16", False), ("fp8", True)])
def test_a_precision_the_cpu_lacks_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, precision, native):
    from synthetic import write_layout

    _cpu_bf16(monkeypatch, native)
    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    code = main(["train", "--model", "vanilla", f"data.path={folder}", f"llm.model={TINY}", "llm.device=cpu",
                 f"llm.precision={precision}", f"data.cache_dir={tmp_path / 'data'}", "--run", "p"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "llm.precision" in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def _classifier(tiny, kind, folder, precision):
    ml, gen = tiny
    cfg = Config()
    cfg.llm = dataclasses.replace(cfg.llm, model=TINY, precision=precision, device="cpu", max_train_pairs=64,
                                  batch_size=32, eval_batch_size=64, evals_per_epoch=1)  # fmt: skip
    clf = make_classifier(kind, cfg, ml, gen, folder / kind)
    clf.progress = False
    return clf, cfg


def _encoder_dtypes(clf) -> tuple[list, list]:
    """Output dtypes of a feed-forward layer of BERT, (in training, in evaluation), as training runs."""
    bert = clf.backbone.bert
    seen: tuple[list, list] = ([], [])
    layer = bert.encoder.layer[0].intermediate.dense
    layer.register_forward_hook(lambda m, _i, out: seen[0 if m.training else 1].append(out.dtype))
    return seen


@needs_bf16
@pytest.mark.parametrize("kind", ["vanilla", "embedding_frozen", "embedding_e2e", "fused"])
def test_training_and_validation_run_in_the_precision_and_say_so(tiny, tmp_path, kind):
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        clf, _ = _classifier(tiny, kind, tmp_path / precision, precision)
        training, evaluation = _encoder_dtypes(clf)
        metrics = clf.train_model_on_data(None)
        assert metrics["precision"] == precision
        # (the end-to-end model's BERT is called past the Trainer's wrapped forward: it runs in it too)
        assert training and set(training) == {dtype}, kind
        assert evaluation and set(evaluation) == {dtype}, kind


@needs_bf16
def test_test_scoring_runs_in_the_precision_of_the_run(tiny, tmp_path):
    clf, _ = _classifier(tiny, "vanilla", tmp_path, "fp32")
    _, fp32 = clf.predict(None, "test")
    clf.config = dataclasses.replace(clf.config, precision="bf16")
    training, evaluation = _encoder_dtypes(clf)
    _, bf16 = clf.predict(None, "test")
    assert set(evaluation) == {torch.bfloat16} and not training
    assert not np.array_equal(bf16, fp32) and np.abs(bf16 - fp32).max() < 0.05  # the same model, rounded


def test_the_resolved_precision_is_part_of_the_stage_key(tiny, monkeypatch):
    ml, gen = tiny
    keys = {}
    for native in (True, False):
        _cpu_bf16(monkeypatch, native)
        for precision in ("auto", "bf16", "fp32"):
            cfg = Config()
            cfg.llm = dataclasses.replace(cfg.llm, device="cpu", precision=precision)
            if precision == "bf16" and not native:
                continue
            keys[native, precision] = classifier_key("vanilla", cfg, ml, gen)
    assert keys[True, "auto"] == keys[True, "bf16"] != keys[True, "fp32"]
    assert keys[False, "auto"] == keys[False, "fp32"] == keys[True, "fp32"]


@needs_bf16
def test_cli_records_each_model_precision(tmp_path):
    from synthetic import write_layout

    folder = write_layout(tmp_path / "ml-synth", "csv").folder
    common = [f"data.path={folder}", f"llm.model={TINY}", "gnn.epochs=3", "gnn.kge_dim=4", *FAST]
    for precision in ("bf16", "fp32"):
        assert main(["train", "--model", "vanilla", *common, f"llm.precision={precision}", "--run", precision]) == 0
        results = json.loads((tmp_path / "runs" / precision / "results.json").read_text())
        assert results["models"]["vanilla"]["precision"] == precision
