"""FastDropout: nn.Dropout's distribution and scaling from a quarter of the random numbers,
reproducible under a seed, and in every classifier in place of nn.Dropout."""

import pytest
import torch

from linklm.llm.dropout import FastDropout
from linklm.llm.models import build_model

from .conftest import TINY


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keeps_each_element_with_probability_1_minus_p_and_rescales(p, dtype):
    torch.manual_seed(0)
    n = 400_000
    x = torch.ones(n, dtype=dtype, requires_grad=True)
    y = FastDropout(p).train()(x)
    kept = y != 0
    # within 5 standard errors of a Binomial(n, 1 - p) share
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * ((p * (1 - p) / n) ** 0.5)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # the gradient is the mask, scaled


def test_masks_are_independent_across_positions_and_calls():
    torch.manual_seed(1)
    a = FastDropout(0.5).train()(torch.ones(64, 1000)) != 0
    b = FastDropout(0.5).train()(torch.ones(64, 1000)) != 0
    # neighbours (which share one 64-bit draw) and two calls agree half the time, as independent coins do
    for same in ((a[:, 1:] == a[:, :-1]), (a == b)):
        assert abs(same.float().mean().item() - 0.5) < 0.01


def test_reproducible_under_a_seed_and_an_identity_in_eval():
    x = torch.randn(8, 16, 32)
    drop = FastDropout(0.1).train()
    torch.manual_seed(7)
    first = drop(x)
    torch.manual_seed(7)
    assert torch.equal(drop(x), first)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    assert not FastDropout(1.0).train()(x).any()


@pytest.mark.parametrize("kind", ["vanilla", "embedding", "fused"])
def test_every_classifier_uses_it_and_attention_still_reads_p(kind):
    model = build_model(TINY, kind, kge_dim=4)
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(type(m) is FastDropout for m in drops)
    attention = model.bert.encoder.layer[0].attention.self
    assert attention.dropout.p == model.config.attention_probs_dropout_prob
