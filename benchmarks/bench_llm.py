"""Language-model side figures, each measured side by side in one run.

    python benchmarks/bench_llm.py [--prompts 1000000] [--steps 20]

- tokenization_speedup: per-node assembly (linklm) vs the HF fast tokenizer, batched, on the same
  prompts of the embedded ml-100k; plus the projected time for ml-32m's 30.7 M examples.
- bf16_speedup: training examples/s in bf16 (autocast, as `llm.precision=bf16` trains) over fp32,
  on the same batches, alternated, for the vanilla and the embedding (frozen KGE) models; plus
  the model's FLOP utilisation in each precision against the machine's measured matmul peak in that
  precision (`flop_utilisation_fp32`, `flop_utilisation_bf16`). On a CPU without native bf16 only
  the fp32 figures are measured: `bf16_speedup_skipped` says why, and earlier bf16 figures stay.
- trainer_overhead: the HF Trainer pipeline (collator with on-the-fly negatives, dynamic padding)
  vs a bare forward/backward/step loop on the same model and the same batches, both in the
  precision `llm.precision=auto` picks here (`bench_precision`).
- embed_once_speedup: a training step in length slices whose words are looked up once per batch
  (`slice_inputs`) over the same step looking them up once per slice.
- fast_dropout_speedup: a training step with `FastDropout` (16-bit draws) over the same step with
  torch's `nn.Dropout`, same weights, same batches.
- attention_speedup: a training step with linklm's CPU attention (`linklm.llm.attention`) over the
  same step with transformers' sdpa, same weights, same batches.
- length_slices_speedup: a training step on batches padded to their longest prompt over the same step
  computed as 4 slices of similar length (`llm.length_slices`), same model, same batches.
  (Every training-step figure but bf16_speedup runs in `bench_precision`.)
- first_token_speedup: a training step whose last BERT layer runs for every token (HF's BertModel)
  over the same step with that layer computed for [CLS] only (`linklm.llm.first_token`), same
  model, same batches; and the same for inference (`first_token_inference_speedup`).
- embedding_vs_vanilla_cost: training time per example of the embedding (KGE-injection) model over
  the vanilla model's, same batches of pairs.

Writes the figures into benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

from linklm import GraphRepresentationGenerator, MovieLensManager
from linklm.llm import EmbeddingClassifier, VanillaClassifier
from linklm.llm.collator import PairDataset
from linklm.llm.tokens import NodeTokens, PromptBuilder
from linklm.runtime import autocast, cpu_has_bf16, resolve_precision, torch_dtype

ML32M_EXAMPLES = 30_720_194  # the seed's llm_df rows on ml-32m
CPU = torch.device("cpu")
# Figures of older versions of this script, now measured per precision (`bf16_speedup`)
RENAMED = ("flop_utilisation", "matmul_peak_gflops", "model_gflops")


def matmul_peak_gflops(dtype=torch.float32, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def bench_tokenization(ml, tokenizer, n: int) -> dict:
    nodes = NodeTokens.from_frames(tokenizer, ml.source_df, ml.target_df)
    builder = PromptBuilder(nodes, "vanilla")
    rng = np.random.default_rng(0)
    idx = ml.llm_index
    rows = rng.integers(0, len(idx), n)
    src, dst = idx["source_idx"].to_numpy()[rows], idx["target_idx"].to_numpy()[rows]
    texts = builder.text(src, dst, "train")
    start = time.perf_counter()
    for lo in range(0, n, 4096):
        builder.batch(src[lo : lo + 4096], dst[lo : lo + 4096], "train")
    ours = time.perf_counter() - start
    start = time.perf_counter()
    for lo in range(0, n, 4096):
        tokenizer(texts[lo : lo + 4096], padding="longest", return_tensors="pt")
    theirs = time.perf_counter() - start
    return {
        "tokenization_prompts": n,
        "tokenization_per_node_seconds": round(ours, 3),
        "tokenization_hf_fast_seconds": round(theirs, 3),
        "tokenization_speedup": round(theirs / ours, 1),
        "tokenization_speedup_target": 50,
        "tokenization_ml32m_projected_seconds_per_node": round(ours / n * ML32M_EXAMPLES, 1),
        "tokenization_ml32m_projected_seconds_hf": round(theirs / n * ML32M_EXAMPLES, 1),
    }


def _batches(clf, pairs: PairDataset, positives: int) -> list[dict]:
    """Training batches of `positives` positives each, with their on-the-fly negatives."""
    collate = clf.collator("train", seed=0)
    return [collate([pairs[i] for i in range(lo, lo + positives)]) for lo in range(0, len(pairs), positives)]


def _pairs(ml, n: int) -> PairDataset:
    src, dst = ml.supervision("train")
    return PairDataset(src[:n], dst[:n], np.ones(min(n, len(src)), dtype=np.int64))


def bare_loop_seconds(clf, batches: list[dict], precision: str) -> float:
    from linklm.llm.slices import forward_by_length

    model = clf.model.train()
    # The optimizer the Trainer uses by default (fused AdamW), its length slices and its autocast
    # (one per batch), so the two loops differ only in the pipeline.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    slices = clf.config.length_slices

    def loss(batch):
        with autocast(CPU, precision):
            return forward_by_length(model, batch, slices).loss

    # Warm-up over every batch: in bf16, oneDNN builds a kernel for each new slice shape on first
    # use, which a timed first pass would pay and the Trainer, measured later, would not.
    for batch in batches:
        loss(batch).backward()
        opt.zero_grad()
    start = time.perf_counter()
    for batch in batches:
        loss(batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the Trainer does (max_grad_norm=1)
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - start


def _alternated(batches: list[dict], runs: dict) -> dict:
    """Seconds each of `runs` (name -> function of a batch) spends on the same batches, alternated
    batch by batch so every run sees the same machine; a first pass over batch 0 warms up."""
    seconds = dict.fromkeys(runs, 0.0)
    for i, batch in enumerate([batches[0], *batches]):
        for name, run in runs.items():
            start = time.perf_counter()
            run(batch)
            if i:
                seconds[name] += time.perf_counter() - start
    return seconds


def _training_step(model, opt, forward, precision: str):
    def step(batch):
        with autocast(CPU, precision):
            loss = forward(batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    return step


def length_slices_speedup(clf, batches: list[dict], precision: str, slices: int = 4) -> dict:
    """Training steps on the same batches, as one batch padded to its longest prompt and as
    `slices` slices of similar length (`llm.length_slices`)."""
    from linklm.llm.slices import forward_by_length

    model = clf.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    seconds = _alternated(batches, {
        n: _training_step(model, opt, lambda batch, n=n: forward_by_length(model, batch, n), precision)
        for n in (1, slices)
    })  # fmt: skip
    examples = sum(len(b["attention_mask"]) for b in batches)
    return {
        "length_slices": slices,
        "length_slices_speedup": round(seconds[1] / seconds[slices], 2),
        "length_slices_examples_per_second": round(examples / seconds[slices], 1),
        "padded_examples_per_second": round(examples / seconds[1], 1),
        "prompt_tokens_mean": round(sum(int(b["attention_mask"].sum()) for b in batches) / examples, 1),
        "padded_tokens_mean": round(float(np.mean([b["attention_mask"].shape[1] for b in batches])), 1),
    }


def first_token_speedup(clf, batches: list[dict], precision: str) -> dict:
    """Training steps and inference on the same batches with the whole last layer (asking for hidden
    states runs HF's BertModel as is) and with [CLS] only."""
    model = clf.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    paths = {"whole": {"output_hidden_states": True}, "first": {}}

    def infer(extra):
        @torch.no_grad()
        def run(batch):
            with autocast(CPU, precision):
                model.eval()(**batch, **extra)
            model.train()

        return run

    runs = {("train", name): _training_step(model, opt, lambda batch, e=extra: model(**batch, **e), precision)
            for name, extra in paths.items()}  # fmt: skip
    runs |= {("infer", name): infer(extra) for name, extra in paths.items()}
    seconds = _alternated(batches, runs)
    return {
        "first_token_speedup": round(seconds["train", "whole"] / seconds["train", "first"], 2),
        "first_token_inference_speedup": round(seconds["infer", "whole"] / seconds["infer", "first"], 2),
    }


class _PerSliceLookups(torch.nn.Module):
    """A classifier without `slice_inputs`: `forward_by_length` then looks its words up per slice."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, **batch):
        return self.model(**batch)


def embed_once_speedup(clf, batches: list[dict], precision: str) -> dict:
    """Training steps in length slices on the same batches, words looked up once per slice and once
    per batch."""
    from linklm.llm.slices import forward_by_length

    model = clf.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    slices = clf.config.length_slices
    per_slice = _PerSliceLookups(model)
    seconds = _alternated(batches, {
        "per_slice": _training_step(model, opt, lambda batch: forward_by_length(per_slice, batch, slices), precision),
        "once": _training_step(model, opt, lambda batch: forward_by_length(model, batch, slices), precision),
    })  # fmt: skip
    return {"embed_once_speedup": round(seconds["per_slice"] / seconds["once"], 2)}


def fast_dropout_speedup(clf, batches: list[dict], precision: str) -> dict:
    """Training steps on the same batches with FastDropout (as built) and with torch's nn.Dropout
    in its place, same weights."""
    import copy

    fast = clf.model.train()
    plain = copy.deepcopy(fast)
    for module in list(plain.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.Dropout):
                setattr(module, name, torch.nn.Dropout(child.p))
    runs = {}
    for name, model in (("plain", plain), ("fast", fast)):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        runs[name] = _training_step(model, opt, functools.partial(_sliced, model, slices=clf.config.length_slices),
                                    precision)  # fmt: skip
    seconds = _alternated(batches, runs)
    return {"fast_dropout_speedup": round(seconds["plain"] / seconds["fast"], 2)}


def attention_speedup(clf, batches: list[dict], precision: str) -> dict:
    """Training steps on the same batches and weights with `attention.attention_forward` (as built)
    and with transformers' sdpa."""
    from linklm.llm.attention import NAME

    model = clf.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    step = _training_step(model, opt, functools.partial(_sliced, model, slices=clf.config.length_slices), precision)
    seconds = _alternated(batches, {impl: lambda b, impl=impl: (model.set_attn_implementation(impl), step(b))
                                    for impl in ("sdpa", NAME)})  # fmt: skip
    return {"attention_speedup": round(seconds["sdpa"] / seconds[NAME], 2)}


def bf16_speedup(models: dict, flops: float, precisions=("fp32", "bf16")) -> dict:
    """Training steps in fp32 and in bf16 autocast, alternated on the same batches, per model
    (name -> (classifier, batches)); the vanilla model's achieved GFLOP/s in each precision, from
    `flops` per batch, against the matmul peak of that precision. With `precisions` ("fp32",) only
    the fp32 figures (a CPU without native bf16)."""
    speedup, figures = {}, {}
    for name, (clf, batches) in models.items():
        model = clf.model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
        forward = functools.partial(_sliced, model, slices=clf.config.length_slices)
        seconds = _alternated(batches, {p: _training_step(model, opt, forward, p) for p in precisions})
        if "bf16" in seconds:
            speedup[name] = round(seconds["fp32"] / seconds["bf16"], 2)
        for p in precisions:
            figures[f"{p}_examples_per_second_{name}"] = round(_examples(batches) / seconds[p], 1)
        if name == "vanilla":
            for p in precisions:
                peak = matmul_peak_gflops(torch_dtype(p))
                achieved = flops * len(batches) / seconds[p] / 1e9
                figures |= {f"matmul_peak_gflops_{p}": round(peak, 1), f"model_gflops_{p}": round(achieved, 1),
                            f"flop_utilisation_{p}": round(achieved / peak, 3)}  # fmt: skip
    return {"bf16_speedup": speedup, **figures} if speedup else figures


def _cpu() -> str:
    """This CPU's model name and the vector ISA torch uses on it."""
    import platform

    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return f"{name or platform.processor() or platform.machine()} ({torch.backends.cpu.get_cpu_capability()})"


def _sliced(model, batch: dict, slices: int):
    from linklm.llm.slices import forward_by_length

    return forward_by_length(model, batch, slices)


def _examples(batches: list[dict]) -> int:
    return sum(len(b["attention_mask"]) for b in batches)


def counted_flops_per_batch(model, batches: list[dict], slices: int) -> float:
    """Training FLOPs (forward and backward) per batch, as torch counts them, computed as the
    Trainer does (`slices` length slices)."""
    from torch.utils.flop_counter import FlopCounterMode

    from linklm.llm.slices import forward_by_length

    with FlopCounterMode(display=False) as counter:
        for batch in batches:
            forward_by_length(model, batch, slices).loss.backward()
    model.zero_grad()
    return counter.get_total_flops() / len(batches)


def trainer_seconds_per_step(clf, pairs: PairDataset, positives: int) -> float:
    """Seconds per step of the Trainer's loop, between the ends of its first and last steps (no
    warm-up, no final evaluation), collator and dynamic padding included."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

    clf.config.max_train_pairs = 0
    clf.config.checkpoint_every = 10**9  # no checkpoint inside the measured steps
    clock = Clock()
    original = clf.pairs
    clf.pairs = lambda dataset, split: pairs if split == "train" else _tiny_val(original(dataset, split))
    clf.train_model_on_data(None, epochs=1, batch_size=2 * positives, callbacks=[clock])
    return (clock.ends[-1] - clock.ends[0]) / (len(clock.ends) - 1)


def _tiny_val(pairs: PairDataset) -> PairDataset:
    keep = np.r_[0:32, len(pairs) - 32 : len(pairs)]
    return PairDataset(pairs.source_idx[keep], pairs.target_idx[keep], pairs.labels[keep])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    args = parser.parse_args()
    torch.manual_seed(0)

    ml = MovieLensManager()
    figures: dict = {}
    vanilla = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, "/tmp/linklm-bench/vanilla", args.model)
    figures.update(bench_tokenization(ml, vanilla.tokenizer, args.prompts))
    print({k: v for k, v in figures.items() if k.startswith("tokenization")}, flush=True)

    positives = args.batch // 2
    pairs = _pairs(ml, positives * args.steps)
    precision = resolve_precision("auto", CPU, "llm.precision")
    figures |= {"bench_precision": precision, "bench_cpu": _cpu()}
    batches = _batches(vanilla, pairs, positives)
    bare = bare_loop_seconds(vanilla, batches, precision) / len(batches)
    figures.update(length_slices_speedup(vanilla, batches, precision))
    print({k: v for k, v in figures.items() if "length" in k or "padded" in k}, flush=True)
    figures.update(first_token_speedup(vanilla, batches, precision))
    figures.update(embed_once_speedup(vanilla, batches, precision))
    figures.update(fast_dropout_speedup(vanilla, batches, precision))
    figures.update(attention_speedup(vanilla, batches, precision))
    print({k: v for k, v in figures.items() if any(w in k for w in ("first_token", "once", "dropout", "attention"))},
          flush=True)  # fmt: skip
    vanilla2 = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, "/tmp/linklm-bench/vanilla2", args.model)
    piped = trainer_seconds_per_step(vanilla2, pairs, positives)
    figures.update({
        "trainer_overhead": round(piped / bare - 1, 3),
        "trainer_overhead_target": 0.15,
        "bare_loop_examples_per_second": round(2 * positives / bare, 1),
        "trainer_examples_per_second": round(2 * positives / piped, 1),
    })  # fmt: skip

    gen = GraphRepresentationGenerator(ml.data, ml.train_data, ml.val_data, ml.test_data, kge_dimension=16,
                                       cache_dir="data/gnn")  # fmt: skip
    if not gen.trained:
        gen.train_model(progress=False, log=lambda _: None)
    embedding = EmbeddingClassifier(ml.llm_df, ml.source_df, ml.target_df, "/tmp/linklm-bench/emb", args.model,
                                    kge=gen)  # fmt: skip
    flops = counted_flops_per_batch(vanilla.model.train(), batches[:4], vanilla.config.length_slices)
    arms = {"vanilla": (vanilla, batches), "embedding_frozen": (embedding, _batches(embedding, pairs, positives))}
    if cpu_has_bf16():
        figures.update(bf16_speedup(arms, flops), bf16_speedup_skipped=None)
    else:  # oneDNN would emulate bf16 (0.35 GFLOP/s on an AVX2 EPYC): earlier bf16 figures are kept
        figures.update(bf16_speedup(arms, flops, ("fp32",)), bf16_speedup_skipped=f"no native bf16 on {_cpu()}")
    print({k: v for k, v in figures.items() if "bf16" in k or "flop" in k}, flush=True)
    vanilla3 = VanillaClassifier(ml.llm_df, ml.source_df, ml.target_df, "/tmp/linklm-bench/vanilla3", args.model)
    t_emb = trainer_seconds_per_step(embedding, pairs, positives)
    t_van = trainer_seconds_per_step(vanilla3, pairs, positives)
    figures.update({"embedding_vs_vanilla_cost": round(t_emb / t_van, 3), "embedding_vs_vanilla_cost_target": 1.2})
    for key, value in figures.items():
        print(f"{key:<48} {value}")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    for stale in RENAMED:
        results.pop(stale, None)
    results.update(figures)
    results = {key: value for key, value in results.items() if value is not None}  # None: no longer applies
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
