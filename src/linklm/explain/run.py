"""`linklm explain`: attention, Shapley values and hidden-state PCA of a run's trained classifiers.

    linklm explain --run runs/default [--samples 200]
    explain_run("runs/default", samples=200)      # the same, from Python; returns explain.json's dict

Reads `<run>/config.json`, loads the data and the GNN from their caches and every classifier from
`<run>/models/<kind>/model/`. It never trains: a missing model is skipped with a warning, and a
missing GNN cache skips the models that need KGEs. Run it from the folder the run was made in (the
config's cache paths are relative to it). On `samples` random test pairs (the same for every model)
it computes the attention by segment and the hidden-state PCA; on the first third of them, the
exact Shapley values (2^4 = 16 coalitions per pair). Writes `<run>/explain/*.png` and `explain.json`
(numbers and a one-paragraph "summary"), then rebuilds the report, which shows both.
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from linklm.config import LLM_KINDS, TEXT_ONLY, Config, load_config
from linklm.errors import UserError
from linklm.explain.attention import cls_to_kge, eager_attention, mean_over_examples, plot_attention, segment_attention
from linklm.explain.hidden import movie_popularity, pc1_stats, pca_2d, plot_hidden, pooled_states, tertiles
from linklm.explain.shapley import PLAYERS, coalition_values, plot_shapley, shapley_values, summarize
from linklm.io import write_json
from linklm.llm.tokens import MOVIE, SEGMENTS, USER
from linklm.runtime import resolve_device

DEFAULT_SAMPLES = 200  # measured on ml-100k, 4 MiniLM-L2 models, 2 CPU cores: 28 s (47 s beside a training run)
CHUNK = 32  # pairs per forward for attention and hidden states
SHAPLEY_CHUNK = 16  # pairs per coalition batch: 16 x 16 coalitions = 256 rows, in at most 4 forwards


def shapley_count(samples: int) -> int:
    """How many of the sampled pairs get Shapley values: a third (each costs 2^4 = 16 forward rows)."""
    return max(1, samples // 3)


class LoadedModel:
    """A trained classifier, ready to be explained on test pairs, in fp32 whatever precision it
    trained in: Shapley values are differences of log-odds that bf16 would round away.

    model: its HF model (the BERT part of the end-to-end model), in eval mode. tables: for the
    embedding kinds, the test KGEs it is fed, (num_users, kge_dim) and (num_movies, kge_dim), as the
    classifier gives them: the GNN's cached tables (frozen), or what the end-to-end model's own GNN
    computes on the test graph.
    """

    def __init__(self, classifier, device: torch.device | str = "cpu"):
        self.name, self.prompt_format = classifier.name, classifier.prompt_format
        self.device = torch.device(device)
        self.model = classifier.backbone.to(self.device).eval()
        self.builder = classifier.builder
        self.mask_id = classifier.nodes.mask_id
        self.tables: tuple[Tensor, Tensor] | None = None
        if self.prompt_format == "embedding":
            self.tables = tuple(t.detach().float().to(self.device) for t in classifier.kge_tables("test"))

    @property
    def players(self) -> tuple[int, ...]:
        """The segment groups this model's prompt holds (vanilla: no KGE)."""
        return (USER, MOVIE) if self.prompt_format == "vanilla" else PLAYERS

    def inputs(self, source_idx: np.ndarray, target_idx: np.ndarray) -> dict[str, Tensor]:
        """input_ids, token_type_ids, attention_mask (n, seq) of test pairs, plus source_kge /
        target_kge (n, kge_dim) for the embedding kinds."""
        batch = {k: v.to(self.device) for k, v in self.builder.batch(source_idx, target_idx, "test").items()}
        if self.tables is not None:
            batch["source_kge"] = self.tables[0][torch.as_tensor(source_idx, device=self.device)]
            batch["target_kge"] = self.tables[1][torch.as_tensor(target_idx, device=self.device)]
        return batch

    @torch.no_grad()
    def log_odds(self, input_ids, token_type_ids, attention_mask, source_kge=None, target_kge=None) -> Tensor:
        """logit[1] - logit[0]: (rows,). A None KGE leaves its slot as the [MASK] embedding."""
        extra = {"source_kge": source_kge, "target_kge": target_kge} if self.prompt_format == "embedding" else {}
        logits = self.model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                            **extra).logits.float()  # fmt: skip
        return logits[:, 1] - logits[:, 0]


def explain_model(model: LoadedModel, source_idx: np.ndarray, target_idx: np.ndarray, shapley_n: int) -> dict:
    """Attention maps, final hidden states and Shapley values of one model on the given pairs.

    Returns maps (n, layers, 6, 6), states {representation: (n, hidden)}, log_odds (n,), phi
    (shapley_n, players) and values (shapley_n, 2^players); Shapley uses the first shapley_n pairs."""
    n = len(source_idx)
    # Chunks of similar length pad little; results go back to the sample's order.
    order = np.argsort(model.builder.lengths(source_idx, target_idx), kind="stable")
    maps, states, odds = [None] * n, {}, torch.empty(n, dtype=torch.float64)
    with eager_attention(model.model), torch.no_grad():
        for start in range(0, n, CHUNK):
            rows = order[start : start + CHUNK]
            batch = model.inputs(source_idx[rows], target_idx[rows])
            out = model.model(**batch, output_attentions=True, output_hidden_states=True)
            chunk_maps = segment_attention(out.attentions, batch["token_type_ids"], batch["attention_mask"])
            for j, r in enumerate(rows):
                maps[r] = chunk_maps[j]
            for rep, value in pooled_states(out.hidden_states[-1], batch["token_type_ids"],
                                            batch["attention_mask"]).items():  # fmt: skip
                states.setdefault(rep, torch.empty(n, value.shape[1]))[torch.as_tensor(rows)] = value
            logits = out.logits.float().cpu()
            odds[torch.as_tensor(rows)] = (logits[:, 1] - logits[:, 0]).double()
    values = []
    for start in range(0, shapley_n, SHAPLEY_CHUNK):
        rows = np.arange(start, min(start + SHAPLEY_CHUNK, shapley_n))
        batch = model.inputs(source_idx[rows], target_idx[rows])
        values.append(coalition_values(model.log_odds, batch, model.players, model.mask_id))
    values = torch.cat(values)
    return {"maps": torch.stack(maps), "states": states, "log_odds": odds, "values": values,
            "phi": shapley_values(values)}  # fmt: skip


def _nan_to_none(a: np.ndarray) -> list:
    return [_nan_to_none(x) for x in a] if a.ndim else None if not np.isfinite(a) else round(float(a), 5)


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def summary_text(models: dict[str, dict], samples: int, shapley_n: int) -> str:
    """One paragraph, from the numbers in explain.json's "models"."""
    kge = {k: m for k, m in models.items() if "user_kge" in m["shapley"]["players"]}
    parts = [f"On {samples} random test pairs ({shapley_n} for the exact Shapley values on the log-odds)"]
    if kge:
        shares = ", ".join(f"{_pct(m['shapley']['kge_share'])} ({k})" for k, m in kge.items())
        parts[0] += f", the KGE token groups carry this share of the total |φ|: {shares}; the text the rest."
        lean = max(kge, key=lambda k: kge[k]["shapley"]["kge_share"])
        parts.append(f"The model leaning most on the KGEs is {lean}.")
    else:
        parts[0] += ", only the vanilla model (no KGEs) was available."
    tops = []
    for k, m in models.items():
        a = m["shapley"]["mean_abs_phi"]
        tops.append(f"{max(a, key=a.get).replace('_', ' ')} ({k})")
    parts.append("The group with the largest mean |φ| is " + ", ".join(tops) + ".")
    if kge:
        att = ", ".join(f"{_pct(m['cls_to_kge'][-1])} ({k})" for k, m in kge.items())
        parts.append(f"In the last layer, [CLS] sends this share of its attention to the KGE segments: {att}.")
    aucs = [(k, m["hidden"]["cls"]["pc1_label_auc"]) for k, m in models.items()]
    aucs = [f"{a:.2f} ({k})" for k, a in aucs if a is not None]
    if aucs:
        parts.append("The first principal component of the final [CLS] state alone separates the labels with "
                     "AUC " + ", ".join(aucs))  # fmt: skip
        rhos = [(k, m["hidden"]["cls"]["pc1_popularity_spearman"]) for k, m in models.items()]
        rhos = [f"{r:.2f} ({k})" for k, r in rhos if r is not None]
        parts[-1] += (" and follows the movie's popularity with |Spearman ρ| " + ", ".join(rhos)) if rhos else ""
        parts[-1] += "."
    return " ".join(parts)


def _model_folders(run: Path, cfg: Config) -> dict[str, Path]:
    """The trained model folders of a run, warning once per configured model that is missing (not
    when none is there: that is the caller's error)."""
    folders, missing = {}, []
    for kind in (k for k in LLM_KINDS if k != "kge_mlp"):  # (kge_mlp reads no text: nothing to explain)
        folder = run / "models" / kind / "model"
        if (folder / "model.safetensors").is_file():
            folders[kind] = folder
        elif kind in cfg.llm.models:
            missing.append((kind, folder))
    if folders:
        for kind, folder in missing:
            warnings.warn(f"{folder}: no trained {kind} model, skipping it", stacklevel=4)
    return folders


def open_run(run_dir: str | Path) -> tuple[Config, Any, Any, dict[str, Path]]:
    """A run's config, data manager, GNN (None if no model needs it) and trained model folders.

    Everything comes from caches; nothing is trained. Models that cannot be loaded are skipped with
    a one-line warning; UserError when none is left."""
    from linklm.data import open_dataset

    run = Path(run_dir)
    if not (run / "config.json").is_file():
        raise UserError(f"{run / 'config.json'}: not a run folder (run `linklm run` first)")
    cfg = load_config(run / "config.json")
    folders = _model_folders(run, cfg)
    if not folders:
        raise UserError(f"{run / 'models'}: no trained model to explain (run `linklm run` first; explain never trains)")
    manager = open_dataset(cfg.data)
    gen = None
    if any(k not in TEXT_ONLY for k in folders):
        from linklm.gnn import GraphRepresentationGenerator

        gen = GraphRepresentationGenerator(
            manager.data, manager.train_data, manager.val_data, manager.test_data,
            config=cfg.gnn, cache_dir=Path(cfg.data.cache_dir) / "gnn",
        )  # fmt: skip
        if not gen.trained:
            warnings.warn(f"{gen.folder}: no cached GNN for this run, skipping the models that need KGEs",
                          stacklevel=2)  # fmt: skip
            folders = {k: v for k, v in folders.items() if k in TEXT_ONLY}
            if not folders:
                raise UserError(f"{gen.folder}: the GNN of this run is not cached; explain never retrains it")
    return cfg, manager, gen, folders


def load_model(kind: str, cfg: Config, manager, gen, run_dir: str | Path, device="cpu") -> tuple[Any, LoadedModel]:
    """The trained classifier of `kind` from `<run>/models/<kind>/model`, and its LoadedModel."""
    from transformers.utils import logging as hf_logging

    from linklm.experiment.pipeline import make_classifier

    root = Path(run_dir) / "models" / kind
    verbosity = hf_logging.get_verbosity()
    # The pretrained checkpoint's load report (missing head, unused layers) describes weights that
    # load_pretrained replaces at once: it would only mislead here.
    hf_logging.set_verbosity_error()
    try:
        clf = make_classifier(kind, cfg, manager, gen, root)
    finally:
        hf_logging.set_verbosity(verbosity)
    clf.load_pretrained(root / "model")
    return clf, LoadedModel(clf, device)


@dataclass(frozen=True)
class PairSample:
    """The random test pairs every model is explained on, with what the figures colour them by.

    src, dst, labels, popularity (the movie's train edges), tertile (its popularity tertile, 0/1/2):
    (n,); cuts: the tertile cuts; shapley_n: how many of the pairs, from the first, get Shapley values."""

    src: np.ndarray
    dst: np.ndarray
    labels: np.ndarray
    popularity: np.ndarray
    tertile: np.ndarray
    cuts: list[float]
    shapley_n: int


def draw_pairs(cfg: Config, manager, samples: int) -> PairSample:
    """`samples` random test pairs (all of them if fewer), drawn with the run's seed."""
    test = (manager.llm_df["split"] == "test").to_numpy()
    index = manager.llm_index[test]
    all_src, all_dst = index["source_idx"].to_numpy(), index["target_idx"].to_numpy()
    all_labels = manager.llm_df.loc[test, "labels"].to_numpy()
    # The same random pairs for every model, so their numbers compare pair for pair.
    pick = np.random.default_rng(cfg.llm.seed).permutation(len(all_src))[:samples]
    dst = all_dst[pick]
    popularity = movie_popularity(manager.edge_df, len(manager.target_df))[dst]
    tertile, cuts = tertiles(popularity)
    return PairSample(all_src[pick], dst, all_labels[pick], popularity, tertile, cuts,
                      min(len(pick), shapley_count(samples)))  # fmt: skip


def explain_run(run_dir: str | Path, samples: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Explain every trained classifier of a run (see the module docstring); returns explain.json."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    run = Path(run_dir)
    samples = DEFAULT_SAMPLES if samples is None else samples
    if samples < 2:
        raise UserError(f"--samples must be at least 2, got {samples}")
    cfg, manager, gen, folders = open_run(run)
    sample = draw_pairs(cfg, manager, samples)
    device = resolve_device(cfg.llm.device, "llm.device")
    load = functools.partial(load_model, cfg=cfg, manager=manager, gen=gen, run_dir=run, device=device)
    out_dir = run / "explain"
    models: dict[str, dict] = {}
    maps: dict[str, np.ndarray] = {}
    written: list[Path] = []
    bar = tqdm(list(folders), desc="explain", unit="model", disable=not progress)
    for kind in bar:
        bar.set_postfix_str(kind)
        models[kind], maps[kind], png = _explain_kind(kind, load, sample, out_dir)
        written.append(png)
        tqdm.write(_progress_line(kind, models[kind]))
    written.append(plot_attention(maps, out_dir / "attention_by_segment.png"))
    written.append(plot_shapley({k: m["shapley"] for k, m in models.items()}, out_dir / "shapley_token_groups.png"))
    for stale in out_dir.glob("*.png"):  # figures of models no longer explained would mislead the report
        if stale not in written:
            stale.unlink()
    n = len(sample.src)
    result = {
        "run": str(run),
        "samples": n,
        "shapley_samples": sample.shapley_n,
        "segments": list(SEGMENTS),
        "popularity_tertile_cuts": sample.cuts,
        "skipped": [k for k in cfg.llm.models if k not in folders],
        "models": models,
        "summary": summary_text(models, n, sample.shapley_n),
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json(out_dir / "explain.json", result)
    if (run / "results.json").is_file():
        from linklm.report.report import build_report

        build_report(run)
    return json.loads((out_dir / "explain.json").read_text())


def _explain_kind(kind: str, load, sample: PairSample, out_dir: Path) -> tuple[dict, np.ndarray, Path]:
    """Load the trained `kind` model with load(kind), explain it on the sample and plot its hidden
    states. Returns its entry of explain.json, its mean attention maps (layers, S, S) and the figure.

    The model is released on return, before the next one is loaded."""
    model_start = time.perf_counter()
    _, model = load(kind)
    res = explain_model(model, sample.src, sample.dst, sample.shapley_n)
    mean = mean_over_examples(res["maps"])
    coords, explained, hidden = {}, {}, {}
    for rep, states in res["states"].items():
        coords[rep], explained[rep] = pca_2d(states)
        stats = pc1_stats(coords[rep], sample.labels, sample.popularity)
        hidden[rep] = {"explained_variance": explained[rep], **stats}
    png = plot_hidden(kind, coords, explained, sample.labels, sample.tertile, sample.cuts,
                      out_dir / f"hidden_states_pca_{kind}.png")  # fmt: skip
    entry = {
        "layers": int(mean.shape[0]),
        "attention": _nan_to_none(mean),
        "cls_to_kge": cls_to_kge(mean),
        "shapley": _shapley_numbers(res, model.players, sample.shapley_n),
        "hidden": hidden,
        "mean_log_odds": float(res["log_odds"].mean()),
        "seconds": round(time.perf_counter() - model_start, 1),
    }
    return entry, mean, png


def _shapley_numbers(res: dict, players: tuple[int, ...], shapley_n: int) -> dict:
    """summarize()'s numbers, plus the checks that the Shapley values add up."""
    phi, values = res["phi"], res["values"]
    shap = summarize(phi, players)
    shap.update({
        "samples": shapley_n,
        "mean_log_odds_all": float(values[:, -1].mean()),
        "mean_log_odds_none": float(values[:, 0].mean()),
        # phi sums to f(all) - f(none) by construction; f(all) must also equal the plain forward.
        "max_efficiency_error": float((phi.sum(1) - (values[:, -1] - values[:, 0])).abs().max()),
        "max_grand_coalition_error": float((values[:, -1] - res["log_odds"][:shapley_n]).abs().max()),
    })  # fmt: skip
    return shap


def _progress_line(kind: str, entry: dict) -> str:
    shap, auc = entry["shapley"], entry["hidden"]["cls"]["pc1_label_auc"]
    line = f"[explain] {kind}:"
    if kind not in TEXT_ONLY:
        line += f" KGE share of |φ| {_pct(shap['kge_share'])},"
        line += f" [CLS]→KGE attention (last layer) {_pct(entry['cls_to_kge'][-1])},"
    top = max(shap["mean_abs_phi"], key=shap["mean_abs_phi"].get)
    return f"{line} top group {top}" + ("" if auc is None else f", PC1 of [CLS] label AUC {auc:.2f}")
