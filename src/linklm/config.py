"""Typed configuration: dataclass defaults, overridden by a YAML file, overridden by `key=value`.

    cfg = load_config("configs/default.yaml", ["data.seed=7", "data.dataset=ml-1m"])

Unknown keys, wrong types and out-of-range values raise `UserError` naming the key; each value is
checked where it enters (`_coerce`, then each section's `validate`), so no bad value reaches numpy,
torch or the OS.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from linklm.errors import UserError
from linklm.overrides import apply, parse_overrides
from linklm.tracking import TRACKERS

SPLITS = ("train", "val", "test")  # the one split of every dataset; val/test carry fixed negatives
# The classifier kinds, in report order; the prompt format each one reads (linklm.llm.tokens).
GNN_MODELS = ("lightgcn", "sage")
# The controls (linklm.llm.controls) carry what a KGE arm carries minus the graph: each trains exactly
# like embedding_frozen with other vectors in its slots; kge_mlp reads the KGEs without any text.
CONTROL_KINDS = ("control_degree", "control_shuffled", "control_random")
# vanilla_all is vanilla trained on every train edge, not only the classifiers' held-out share.
# fused_text and fused_kge are the fused model's ablations: its correction reads the text or u ⊙ m alone.
FUSED_KINDS = ("fused", "fused_text", "fused_kge")
LLM_KINDS = ("vanilla", "prompt", "embedding_frozen", "embedding_e2e", *FUSED_KINDS, *CONTROL_KINDS, "kge_mlp",
             "vanilla_all")  # fmt: skip
TEXT_ONLY = ("vanilla", "vanilla_all")  # the kinds that read no KGE (and need no GNN)
PROMPT_FORMAT = {
    "vanilla": "vanilla", "prompt": "prompt", "embedding_frozen": "embedding", "embedding_e2e": "embedding",
    **dict.fromkeys(FUSED_KINDS, "embedding"), **dict.fromkeys(CONTROL_KINDS, "embedding"), "kge_mlp": "vanilla",
    "vanilla_all": "vanilla",
}  # fmt: skip
# What `linklm run` trains by default: every kind but control_random, which the sweep trains where it
# has the time (control_shuffled already keeps every KGE value and destroys the graph), and
# vanilla_all, whose ~9x the positives `--preset full` of the sweep pays for
RUN_KINDS = tuple(kind for kind in LLM_KINDS if kind not in ("control_random", "vanilla_all"))
# Each kind's learning rate, chosen once on val of the development split (data.seed 42) from 1e-4,
# 3e-4, 1e-3, 3e-3 (kge_mlp: 3e-4, 1e-3, 3e-3) at make run's budget (benchmarks/lr_grid.py; the
# table is in README "Learning rates"). fused kept its GNN start at every rate, so 1e-4 stayed; its
# ablations take its rate.
LR_BY_MODEL = {"vanilla": 1e-3, "prompt": 3e-4, "embedding_frozen": 3e-4, "embedding_e2e": 1e-3, "fused": 1e-4,
               "fused_text": 1e-4, "fused_kge": 1e-4, "control_degree": 3e-4, "control_shuffled": 1e-3,
               "control_random": 1e-3, "kge_mlp": 1e-3, "vanilla_all": 1e-3}  # fmt: skip
# The KGE tables hold every node's vector for each split: at ml-32m (289 k nodes) a dimension of
# 4096 is already 14 GB of float32 tables, and BERT-size models read 768..1024-wide inputs.
MAX_DIM = 4096
MAX_COLD_ITEMS = 0.5  # data.cold_items above this leaves too few items to learn from
NEGATIVE_SAMPLERS = ("uniform", "popularity")  # data.negatives
# The HF Trainer seeds numpy's legacy generator, which takes 0 .. 2**32 - 1; every seed stays there.
SEED_RANGE = range(2**32)
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # runtime.resolve_precision says which a device can train in
# What a local model folder must hold: the BERT config, and a tokenizer (fast or WordPiece vocab).
MODEL_FILES = ("config.json",)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


@dataclass
class DataConfig:
    dataset: str = "ml-100k"  # (str) a GroupLens name (ml-100k, ml-1m, ml-32m, ...); ml-100k is embedded
    path: str | None = None  # (str) a local zip or folder to read instead of the embedded/downloaded data
    cache_dir: str = "data"  # (str) processed tables and downloads live here, one folder per cache key
    val_ratio: float = 0.1  # (float) share of ratings held out as val supervision edges
    test_ratio: float = 0.1  # (float) share of ratings held out as test supervision edges
    # Share of train edges held out of the GNN (no message passing, no supervision): the classifiers
    # train on them, so their KGEs are out of sample. 0: every train edge is both (in-sample KGEs).
    disjoint_train_ratio: float = 0.1
    neg_ratio: float = 1.0  # (float) fixed val/test negatives per positive
    # (int) seed of the split and of the fixed negatives: the record split, drawn once and run once
    # after the protocol was frozen (docs/protocol.md); 42, the development split, is every earlier figure
    seed: int = 687406
    # Any user–item dataset instead of MovieLens (linklm.data.interactions): two files, each .csv,
    # .tsv/.tab or .parquet. Every row of `interactions` is a link; `items` describes the items.
    interactions: str | None = None  # (str) the user–item file: one row per interaction
    items: str | None = None  # (str) the item file: the item id column and the item's text
    user_column: str = "user_id"  # (str) the user id column of the interactions file
    item_column: str = "item_id"  # (str) the item id column, named the same in both files
    # (list) item columns the prompt shows after the item id, in order, joined by [SEP]; empty:
    # every column of the items file but the item id. A column named `genres` ("a|b") also gives
    # the GNN's one-hot item features.
    text_columns: list[str] = field(default_factory=list)
    # (float) item cold start: this share of the items that have a rating, drawn with data.seed, is
    # held out entirely. A cold item has no train edge, its ratings go half to val, half to test, and
    # no split's message passing carries them; its fixed negatives are drawn among the cold items
    cold_items: float = 0.0
    # (str) uniform | popularity: how the fixed val/test negatives pick their item (warm items; a cold
    # item's negatives stay uniform among the cold ones). popularity: in proportion to its train degree,
    # so that popularity alone no longer separates positives from negatives
    negatives: str = "uniform"

    def validate(self) -> None:
        # val picks the GNN epoch and the classifier checkpoint, test is what is reported: neither may be empty.
        for key in ("val_ratio", "test_ratio"):
            value = getattr(self, key)
            if not 0.0 < value < 1.0:
                raise UserError(f"config key data.{key} must be in (0, 1): {key[:-6]} pairs are needed, got {value}")
        if not 0.0 <= self.disjoint_train_ratio < 1.0:
            raise UserError(f"config key data.disjoint_train_ratio must be in [0, 1), got {self.disjoint_train_ratio}")
        if self.val_ratio + self.test_ratio >= 1.0:
            raise UserError("config keys data.val_ratio + data.test_ratio must be < 1")
        if self.neg_ratio <= 0:
            raise UserError(f"config key data.neg_ratio must be > 0, got {self.neg_ratio}")
        _check_seed("data.seed", self.seed)
        if not 0.0 <= self.cold_items <= MAX_COLD_ITEMS:
            raise UserError(f"config key data.cold_items must be in [0, {MAX_COLD_ITEMS}], got {self.cold_items}")
        if self.negatives not in NEGATIVE_SAMPLERS:
            raise UserError(f"config key data.negatives must be one of {', '.join(NEGATIVE_SAMPLERS)}, "
                            f"got {self.negatives!r}")  # fmt: skip
        self._validate_tables()

    def _validate_tables(self) -> None:
        if (self.interactions is None) != (self.items is None):
            raise UserError("config keys data.interactions and data.items go together: set both or neither")
        if self.interactions is not None and self.path is not None:
            raise UserError("config keys data.path and data.interactions exclude each other: set one")
        for key in ("interactions", "items", "user_column", "item_column"):
            if getattr(self, key) == "":
                raise UserError(f"config key data.{key} must not be empty")
        if self.user_column == self.item_column:
            raise UserError(f"config keys data.user_column and data.item_column must differ ({self.item_column!r})")
        for column in self.text_columns:
            if not column or column == self.item_column or self.text_columns.count(column) > 1:
                raise UserError(
                    f"config key data.text_columns: {column!r} must be a non-empty item column other than "
                    f"data.item_column, named once"
                )


@dataclass
class GNNConfig:
    model: str = "lightgcn"  # (str) lightgcn or sage (the seed's GraphSAGE); lightgcn wins on val (README)
    kge_dim: int = 64  # (int) output dimension of the encoder: the KGE size the LLMs receive
    num_layers: int = 2  # (int) lightgcn's propagation layers (sage has two SAGEConv layers)
    hidden_channels: int = 64  # (int) sage: width of the embeddings and the first SAGEConv layer
    supervision_share: float = 0.3  # (float) sage: share of its edges drawn each epoch as supervision-only
    epochs: int = 300  # (int) full-batch epochs; the best val-AUC epoch is kept
    lr: float = 0.01  # (float) Adam learning rate (full batch tolerates a larger one than mini-batches)
    weight_decay: float = 0.0  # (float) Adam weight decay
    dropout: float = 0.0  # (float) dropout between the two SAGEConv layers
    neg_ratio: float = 1.0  # (float) fresh negatives per train supervision edge, every epoch
    seed: int = 42  # (int) seed of the initialisation and the train negatives
    device: str = "auto"  # (str) auto, cpu, cuda or cuda:N; the GNN always runs on one device
    checkpoint_every: int = 10  # (int) epochs between resumable checkpoints (0 = none)

    def validate(self) -> None:
        if self.model not in GNN_MODELS:
            raise UserError(f"config key gnn.model must be one of {', '.join(GNN_MODELS)}, got {self.model!r}")
        if not 0.0 < self.supervision_share < 1.0:
            raise UserError(f"config key gnn.supervision_share must be in (0, 1), got {self.supervision_share}")
        if self.checkpoint_every < 0:
            raise UserError(f"config key gnn.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        for key in ("kge_dim", "num_layers", "hidden_channels", "epochs"):
            if getattr(self, key) <= 0:
                raise UserError(f"config key gnn.{key} must be > 0, got {getattr(self, key)}")
        for key in ("kge_dim", "hidden_channels"):
            if getattr(self, key) > MAX_DIM:
                raise UserError(f"config key gnn.{key} must be <= {MAX_DIM} (the KGE tables hold one such vector "
                                f"per node and split), got {getattr(self, key)}")  # fmt: skip
        if self.lr <= 0:
            raise UserError(f"config key gnn.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise UserError(f"config key gnn.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"config key gnn.dropout must be in [0, 1), got {self.dropout}")
        if self.neg_ratio <= 0:
            raise UserError(f"config key gnn.neg_ratio must be > 0, got {self.neg_ratio}")
        _check_device("gnn.device", self.device)
        _check_seed("gnn.seed", self.seed)


@dataclass
class LLMConfig:
    model: str = "all-MiniLM-L6-v2"  # (str) MiniLM (offline), a local folder, a hub id, or random:L2-H128
    # (int) keep only the first N transformer layers (0 = all). MiniLM's first 2 layers train at
    # ~235 examples/s on 2 CPU cores against ~70/s for all 6: what makes `make run` fit in 20 minutes.
    num_layers: int = 2
    # (int) the most passes over the train supervision positives: the budget. Training stops earlier
    # once llm.patience val evaluations in a row gained no more than llm.selection_margin
    max_epochs: int = 3
    patience: int = 3  # (int) val evaluations without a gain that stop training (0 = never: train to max_epochs)
    evals_per_epoch: int = 2  # (int) val evaluations per epoch, evenly spaced; the best one is kept
    eval_steps: int = 0  # (int) steps between val evaluations instead (0 = from llm.evals_per_epoch)
    # (float) a later val evaluation replaces the kept one only if its AUC is higher by more than
    # this: a smaller gain is noise on 4,000 val pairs (the fused model keeps its GNN start for it)
    selection_margin: float = 0.001
    val_pairs: int = 4000  # (int) val pairs those evaluations score, drawn once per seed (0 = all)
    test_pairs: int = 0  # (int) test pairs each classifier is scored on, the same for all (0 = all; sweeps)
    batch_size: int = 256  # (int) examples per step, negatives included
    eval_batch_size: int = 256  # (int) examples per step for val/test (on 2 cores 256 scores 1.14x as fast as 512)
    # (int) a training batch runs as this many slices of similar prompt length, each padded to its own
    # longest (1 = one batch padded to its longest): the same loss and gradients, 1.6x the examples/s
    # on ml-100k (1.7x before the first-token last layer); only float rounding and dropout draws
    # differ, so it is not part of the stage key
    length_slices: int = 4
    lr: float = 1e-4  # (float) AdamW learning rate of the language model
    gnn_lr: float = 1e-3  # (float) learning rate of the GNN in the end-to-end model
    head_lr: float = 1e-3  # (float) fused: learning rate of its new modules (KGE projection, fusion head)
    # (dict) model kind -> its learning rate, chosen on val (README "Learning rates"): for a BERT kind
    # it replaces llm.lr, for kge_mlp (no pretrained weights) llm.head_lr; unnamed kinds keep those
    lr_by_model: dict[str, float] = field(default_factory=lambda: dict(LR_BY_MODEL))
    # (int) prompt: KGE components written as text per node, the first principal components of the
    # train table (0 = all kge_dim, the seed's design; the sweep always writes all). Each costs a token.
    prompt_kge_dims: int = 0
    weight_decay: float = 0.01  # (float) AdamW weight decay
    warmup_ratio: float = 0.05  # (float) share of steps with a linearly rising learning rate
    neg_ratio: float = 1.0  # (float) negatives per positive in every training batch
    # (float) share of training pairs whose item KGE is replaced by the vector a held-out item gets
    # (DropoutNet): models reading KGE tables then learn to lean on the text where the graph knows nothing
    item_kge_dropout: float = 0.0
    # (bool) write the user's features after the user id: MovieLens' age, gender and occupation, or
    # every column of another dataset's user table. Off: the seed's prompt
    user_features: bool = False
    max_train_pairs: int = 0  # (int) cap on train positives per epoch (0 = all); for quick runs
    seed: int = 42  # (int) model initialisation, data order and on-the-fly negatives
    checkpoint_every: int = 0  # (int) steps between resumable checkpoints (0 = by time: llm.checkpoint_minutes)
    # (float) with checkpoint_every 0: a checkpoint once this many minutes of training passed since
    # the last (0 = none). Each costs ~0.9 s on our machines' disks (the weights and AdamW's moments,
    # 190 MB for MiniLM-L2): four per epoch were ~8 % of `make run`'s training, whose models train
    # for under a minute each
    checkpoint_minutes: float = 5.0
    # (int) test users of the sampled ranking (one positive among 99 non-edges each; 0 = none): 100
    # prompts per user. At 300 the standard error of HR@10 is ~0.025, small enough to tell close
    # models apart; 30 left it at ~0.08 (experiment/ranking.py)
    ranking_users: int = 300
    audit_shards: bool = False  # (bool) each rank records the train positives it saw per epoch
    models: list[str] = field(default_factory=lambda: list(RUN_KINDS))  # (list) what `linklm run` trains
    device: str = "auto"  # (str) auto, cpu, cuda or cuda:N
    # (str) auto, fp32, bf16 or fp16: the autocast of training, validation and test scoring. auto:
    # bf16 on a CPU with native bf16 (AVX-512 BF16 or AMX) and on a GPU that has it, fp16 on an
    # older GPU, fp32 otherwise. Part of the stage key: bf16 changes the numbers (README "Precision")
    precision: str = "auto"

    def validate(self) -> None:
        for key in ("max_epochs", "evals_per_epoch", "batch_size", "eval_batch_size", "length_slices"):
            if getattr(self, key) <= 0:
                raise UserError(f"config key llm.{key} must be > 0, got {getattr(self, key)}")
        for key in (
            "num_layers",
            "max_train_pairs",
            "val_pairs",
            "checkpoint_every",
            "prompt_kge_dims",
            "ranking_users",
            "test_pairs",
            "patience",
            "eval_steps",
        ):
            if getattr(self, key) < 0:
                raise UserError(f"config key llm.{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.item_kge_dropout < 1:
            raise UserError(f"config key llm.item_kge_dropout must be in [0, 1), got {self.item_kge_dropout}")
        if not 0 <= self.selection_margin < 1:
            raise UserError(f"config key llm.selection_margin must be in [0, 1), got {self.selection_margin}")
        if self.checkpoint_minutes < 0:
            raise UserError(f"config key llm.checkpoint_minutes must be >= 0, got {self.checkpoint_minutes}")
        for key in ("lr", "gnn_lr", "head_lr", "neg_ratio"):
            if getattr(self, key) <= 0:
                raise UserError(f"config key llm.{key} must be > 0, got {getattr(self, key)}")
        if not 0 <= self.warmup_ratio < 1 or self.weight_decay < 0:
            raise UserError("config keys llm.warmup_ratio must be in [0, 1) and llm.weight_decay >= 0")
        for kind, lr in self.lr_by_model.items():
            if kind not in LLM_KINDS:
                known = ", ".join(LLM_KINDS)
                raise UserError(f"config key llm.lr_by_model: unknown model kind {kind!r} (known: {known})")
            if lr <= 0:
                raise UserError(f"config key llm.lr_by_model.{kind} must be > 0, got {lr}")
        unknown = [m for m in self.models if m not in LLM_KINDS]
        if unknown:
            raise UserError(f"config key llm.models: unknown model kind {unknown[0]!r} (known: {', '.join(LLM_KINDS)})")
        _check_device("llm.device", self.device)
        _check_precision("llm.precision", self.precision)
        _check_seed("llm.seed", self.seed)
        _check_model("llm.model", self.model)
        if self.batch_size < 1 + self.neg_ratio:
            raise UserError("config key llm.batch_size must hold at least one positive and its negatives")

    def lr_of(self, kind: str) -> float:
        """The learning rate `kind` trains at: llm.lr_by_model's, else llm.lr (kge_mlp: llm.head_lr)."""
        return self.lr_by_model.get(kind, self.head_lr if kind == "kge_mlp" else self.lr)

    def for_model(self, kind: str) -> LLMConfig:
        """This section as `kind` trains: with its own learning rate (`lr_of`)."""
        return dataclasses.replace(self, **{"head_lr" if kind == "kge_mlp" else "lr": self.lr_of(kind)})


def _check_device(key: str, value: str) -> None:
    if not DEVICE.fullmatch(value):
        raise UserError(f"config key {key} must be auto, cpu, cuda or cuda:N, got {value!r}")


def _check_precision(key: str, value: str) -> None:
    if value not in PRECISIONS:
        raise UserError(f"config key {key} must be one of {', '.join(PRECISIONS)}, got {value!r}")


def _check_seed(key: str, value: int) -> None:
    if value not in SEED_RANGE:
        raise UserError(f"config key {key} must be in 0 .. 2**32 - 1, got {value}")


def _check_model(key: str, value: str) -> None:
    """A model given as a folder must hold a config and a tokenizer: found out now, not after a run
    folder was written. Hub ids and names are checked where they are loaded."""
    folder = Path(value).expanduser()
    if value.startswith(("/", ".", "~")) and not folder.is_dir():
        raise UserError(f"config key {key}: {folder} is not a folder")
    if not folder.is_dir():
        return
    for needed in (MODEL_FILES, TOKENIZER_FILES):
        if not any((folder / name).is_file() for name in needed):
            raise UserError(f"config key {key}: {folder} has no {' or '.join(needed)}; is it a model folder?")


@dataclass
class Config:
    name: str = "default"  # (str) run name: artifacts go to <runs_dir>/<name>/
    runs_dir: str = "runs"  # (str) parent folder of all runs
    progress: bool = True  # (bool) progress bars on long work (GNN epochs, classifier steps); changes no result
    tracking: str = "none"  # (str) none, tensorboard, mlflow or wandb: where the training curves also go
    data: DataConfig = field(default_factory=DataConfig)
    gnn: GNNConfig = field(default_factory=GNNConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)

    def validate(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise UserError(f"config key name must be a plain folder name, got {self.name!r}")
        if self.tracking not in TRACKERS:
            raise UserError(f"config key tracking must be one of {', '.join(TRACKERS)}, got {self.tracking!r}")
        self.data.validate()
        self.gnn.validate()
        self.llm.validate()

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    cfg = Config()
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{path}: not a readable YAML config ({reason})") from None
        if loaded is not None:
            if not isinstance(loaded, dict):
                raise UserError(f"{path}: a config must be a YAML mapping")
            _apply_layer(cfg, loaded)
    if overrides:
        _apply_layer(cfg, parse_overrides(overrides))
    cfg.validate()
    return cfg


def _apply_layer(cfg: Config, layer: dict[str, Any]) -> None:
    """One layer over the last: a layer that sets llm.lr but not llm.lr_by_model means that rate for
    every kind, so it clears the per-kind rates (a BERT kind's; kge_mlp keeps llm.head_lr)."""
    apply(cfg, layer)
    llm = layer.get("llm")
    if isinstance(llm, dict) and "lr" in llm and "lr_by_model" not in llm:
        cfg.llm.lr_by_model = {k: v for k, v in cfg.llm.lr_by_model.items() if k == "kge_mlp"}


def _section(cls, prefix: str, kwargs: dict[str, Any]):
    cfg = cls()
    apply(cfg, kwargs, prefix=f"{prefix}.")
    cfg.validate()
    return cfg


def data_config(**kwargs: Any) -> DataConfig:
    """A validated `DataConfig` from keyword arguments (the Python API's entry)."""
    return _section(DataConfig, "data", kwargs)


def gnn_config(**kwargs: Any) -> GNNConfig:
    """A validated `GNNConfig` from keyword arguments (the Python API's entry)."""
    return _section(GNNConfig, "gnn", kwargs)


def llm_config(**kwargs: Any) -> LLMConfig:
    """A validated `LLMConfig` from keyword arguments (the Python API's entry)."""
    return _section(LLMConfig, "llm", kwargs)
