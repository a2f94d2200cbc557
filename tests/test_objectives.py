"""The three objectives against their definitions (warmup.py's docstring)."""

import math

import pytest
import torch

from warmgen.warmup import objective_terms

torch.manual_seed(0)
LOGP_C = torch.randn(3, 4) - 5
LOGP_Y = torch.randn(3, 4) * 3 - 10
N_C = torch.tensor([[2.0, 0, 5, 1]] * 3)
N_Y = torch.full((3, 4), 6.0)


def test_best_of_k_picks_the_argmax_reward():
    objective, tokens, weights = objective_terms("best_of_k", LOGP_C, LOGP_Y, N_C, N_Y, 1.0)
    best = LOGP_Y.argmax(dim=1)
    assert torch.equal(weights.argmax(dim=1), best) and torch.equal(weights.sum(1), torch.ones(3))
    for b in range(3):
        i = best[b]
        assert objective[b].item() == pytest.approx((LOGP_C[b, i] + LOGP_Y[b, i]).item())
        assert tokens[b].item() == N_C[b, i].item() + N_Y[b, i].item()


def test_marginal_weights_are_the_posterior_and_sum_to_one():
    _, _, weights = objective_terms("marginal", LOGP_C, LOGP_Y, N_C, N_Y, 1.0)
    assert torch.allclose(weights.sum(1), torch.ones(3))
    assert torch.allclose(weights, torch.exp(LOGP_Y) / torch.exp(LOGP_Y).sum(1, keepdim=True))


def test_marginal_gradient_equals_autograd_of_log_mean_exp():
    logp_y = LOGP_Y.clone().requires_grad_(True)
    objective, _, _ = objective_terms("marginal", LOGP_C, logp_y, N_C, N_Y, 0.0)
    (grad,) = torch.autograd.grad(objective.sum(), logp_y)
    reference = logp_y.detach().clone().requires_grad_(True)
    (torch.logsumexp(reference, dim=1) - math.log(4)).sum().backward()
    assert torch.allclose(grad, reference.grad, atol=1e-6)


def test_rloo_baseline_leaves_the_sample_out():
    logp_c = LOGP_C.clone().requires_grad_(True)
    objective, tokens, _ = objective_terms("rloo", logp_c, LOGP_Y, N_C, N_Y, 1.0)
    (grad,) = torch.autograd.grad(objective.sum(), logp_c)
    for b in range(3):
        for i in range(4):
            others = [LOGP_Y[b, j].item() for j in range(4) if j != i]
            advantage = LOGP_Y[b, i].item() - sum(others) / 3
            assert grad[b, i].item() == pytest.approx(advantage / 4, rel=1e-5)
        assert objective[b].item() == pytest.approx(((LOGP_Y[b] - (LOGP_Y[b].sum() - LOGP_Y[b]) / 3) * LOGP_C[b] + LOGP_Y[b]).mean().item(), rel=1e-5)
        assert tokens[b].item() == pytest.approx((N_C[b] + N_Y[b]).mean().item())


def test_reward_is_held_constant():
    """No objective back-propagates through the weights, only through the log-prob terms."""
    logp_y = LOGP_Y.clone().requires_grad_(True)
    for name in ("best_of_k", "marginal", "rloo"):
        objective, _, weights = objective_terms(name, LOGP_C, logp_y, N_C, N_Y, 1.0)
        assert not weights.requires_grad
        (grad,) = torch.autograd.grad(objective.sum(), logp_y)
        assert torch.allclose(grad, weights)


def test_warmup_loss_weight_zero_drops_the_warmup_term():
    logp_c = LOGP_C.clone().requires_grad_(True)
    for name in ("best_of_k", "marginal", "rloo"):
        objective, tokens, weights = objective_terms(name, logp_c, LOGP_Y, N_C, N_Y, 0.0)
        (grad,) = torch.autograd.grad(objective.sum(), logp_c)
        assert torch.count_nonzero(grad) == 0
        assert torch.allclose(tokens, (weights * N_Y).sum(1))
