"""A training batch computed in slices of similar length gives the padded batch's logits, loss and
gradients, for every kind; the end-to-end model runs its GNN once per batch, not once per slice."""

import numpy as np
import pytest
import torch

from linklm.config import Config
from linklm.experiment.pipeline import make_classifier
from linklm.llm.slices import forward_by_length

from .conftest import TINY


def _classifier(tiny, kind, folder):
    ml, gen = tiny
    cfg = Config()
    cfg.llm.model = TINY
    return make_classifier(kind, cfg, ml, gen, folder / kind)


def _batch(clf, n=48):
    """A training batch as the Trainer gets it: n positives, as many on-the-fly negatives."""
    train = clf._train_positives(None)
    collate = clf.collator("train", seed=3)
    return collate([train[i] for i in range(min(n, len(train)))])


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["vanilla", "prompt", "embedding_frozen", "embedding_e2e", "fused"])
def test_slices_give_the_padded_batch_logits_loss_and_gradients(tiny, tmp_path, kind):
    clf = _classifier(tiny, kind, tmp_path)
    model = clf.model.eval()  # no dropout: both ways compute the same function
    batch = _batch(clf)
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()  # there is padding to save

    whole = model(**batch)
    whole.loss.backward()
    expected = _grads(model)
    model.zero_grad()
    sliced = forward_by_length(model, batch, slices=4)
    sliced.loss.backward()
    torch.testing.assert_close(sliced.logits, whole.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sliced.loss, whole.loss, atol=1e-6, rtol=1e-5)
    got = _grads(model)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, atol=1e-5, rtol=1e-3, msg=name)


def test_slices_pad_each_slice_to_its_own_longest(tiny, tmp_path):
    clf = _classifier(tiny, "vanilla", tmp_path)
    widths = []
    hook = clf.model.bert.embeddings.register_forward_hook(lambda _m, _i, out: widths.append(out.shape[1]))
    batch = _batch(clf)
    forward_by_length(clf.model, batch, slices=4)
    hook.remove()
    lengths = np.sort(batch["attention_mask"].sum(1).numpy())
    assert widths == [int(part.max()) for part in np.array_split(lengths, 4)]


def test_end_to_end_runs_its_gnn_once_per_sliced_batch(tiny, tmp_path):
    clf = _classifier(tiny, "embedding_e2e", tmp_path)
    model = clf.model.train()
    calls = []
    hook = model.gnn.register_forward_hook(lambda *_: calls.append(1))
    forward_by_length(model, _batch(clf), slices=4)
    hook.remove()
    assert len(calls) == 1


@pytest.mark.parametrize("kind", ["vanilla", "embedding_frozen", "embedding_e2e", "fused"])
def test_a_sliced_batch_looks_its_words_up_once(tiny, tmp_path, kind):
    """One lookup, so the word table's dense gradient is built once per step, not once per slice."""
    clf = _classifier(tiny, kind, tmp_path)
    calls = []
    hook = clf.backbone.bert.embeddings.word_embeddings.register_forward_hook(lambda *_: calls.append(1))
    forward_by_length(clf.model.train(), _batch(clf), slices=4).loss.backward()
    hook.remove()
    assert len(calls) == 1
