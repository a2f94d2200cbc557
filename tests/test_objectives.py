"""The objectives against their definitions (warmup.py's docstring)."""

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


@pytest.mark.parametrize("name", ["rloo", "latro"])
def test_leave_one_out_advantage_is_exactly_zero_when_rewards_are_equal(name):
    """Equal rewards carry no signal: the warmup gradient is exactly 0, not a rounding residue
    (0.1 is not a sum of powers of two, so mean-then-subtract leaves one), repeats and padding included."""
    reward = torch.full((2, 4), 0.1)
    draws = torch.tensor([[1, 1, 1, 1], [3, 2, 2, 0]])
    logp_c = LOGP_C[:2].clone().requires_grad_(True)
    objective, _, _ = objective_terms(name, logp_c, reward, N_C[:2], N_Y[:2], 1.0, draws=draws)
    (grad,) = torch.autograd.grad(objective.sum(), logp_c)
    assert torch.equal(grad, torch.zeros_like(grad))


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


@pytest.mark.parametrize("name", ["best_of_k", "marginal", "rloo"])
def test_masked_candidates_equal_the_unpadded_example(name):
    """An example with 2 real candidates padded to 4 gives what the 2 candidates alone give."""
    mask = torch.tensor([[True, True, False, False]] + [[True] * 4] * 2)
    padded = [t.masked_fill(~mask, 0.0) for t in (LOGP_C, LOGP_Y, N_C, N_Y)]
    objective, tokens, weights = objective_terms(name, *padded, 1.0, mask)
    alone = objective_terms(name, *(t[:1, :2] for t in (LOGP_C, LOGP_Y, N_C, N_Y)), 1.0)
    assert objective[0].item() == pytest.approx(alone[0].item(), rel=1e-6)
    assert tokens[0].item() == pytest.approx(alone[1].item(), rel=1e-6)
    assert torch.allclose(weights[0, :2], alone[2][0]) and (weights[0, 2:] == 0).all()
    full = objective_terms(name, LOGP_C[1:], LOGP_Y[1:], N_C[1:], N_Y[1:], 1.0)
    assert torch.allclose(objective[1:], full[0])


def test_rloo_single_candidate_trains_the_likelihood_only():
    mask = torch.tensor([[True, False]])
    logp_c = torch.tensor([[-3.0, 0.0]], requires_grad=True)
    objective, tokens, _ = objective_terms("rloo", logp_c, torch.tensor([[-5.0, 0.0]]), torch.tensor([[2.0, 0]]),
                                           torch.tensor([[4.0, 0]]), 1.0, mask)
    assert objective.item() == -5.0 and tokens.item() == 6.0
    (grad,) = torch.autograd.grad(objective.sum(), logp_c)
    assert (grad == 0).all()


def test_joint_best_of_k_picks_the_argmax_of_the_joint_log_probability():
    _, _, weights = objective_terms("best_of_k", LOGP_C, LOGP_Y, N_C, N_Y, 0.5, rank_by="joint")
    assert torch.equal(weights.argmax(dim=1), (0.5 * LOGP_C + LOGP_Y).argmax(dim=1))


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_joint_marginal_gradient_equals_autograd_of_the_candidate_set_marginal(lam):
    """J's gradient is that of log sum_i P(c_i|x)^lam P(y|c_i,x), in both log-probability terms."""
    logp_c, logp_y = LOGP_C.clone().requires_grad_(True), LOGP_Y.clone().requires_grad_(True)
    objective, _, weights = objective_terms("marginal", logp_c, logp_y, N_C, N_Y, lam, rank_by="joint")
    grads = torch.autograd.grad(objective.sum(), (logp_c, logp_y))
    reference_c, reference_y = LOGP_C.clone().requires_grad_(True), LOGP_Y.clone().requires_grad_(True)
    torch.logsumexp(lam * reference_c + reference_y, dim=1).sum().backward()
    assert torch.allclose(grads[0], reference_c.grad, atol=1e-6)
    assert torch.allclose(grads[1], reference_y.grad, atol=1e-6)
    assert torch.allclose(weights.sum(1), torch.ones(3))


def test_joint_leaves_rloo_on_the_reward():
    for a, b in zip(objective_terms("rloo", LOGP_C, LOGP_Y, N_C, N_Y, 1.0),
                    objective_terms("rloo", LOGP_C, LOGP_Y, N_C, N_Y, 1.0, rank_by="joint")):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["best_of_k", "marginal", "rloo"])
def test_a_candidate_drawn_twice_equals_two_copies(name):
    """draws [2, 1, 1] over candidates (0, 2, 3) gives what the 4 candidates (0, 0, 2, 3) give."""
    copies = [torch.stack([t[:, 0], t[:, 0], t[:, 2], t[:, 3]], dim=1) for t in (LOGP_C, LOGP_Y, N_C, N_Y)]
    merged = [torch.stack([t[:, 0], t[:, 2], t[:, 3]], dim=1) for t in (LOGP_C, LOGP_Y, N_C, N_Y)]
    once = objective_terms(name, *merged, 0.5, torch.tensor([[2, 1, 1]] * 3))
    twice = objective_terms(name, *copies, 0.5)
    assert torch.allclose(once[0], twice[0], rtol=1e-6) and torch.allclose(once[1], twice[1], rtol=1e-6)
    assert torch.allclose(once[2][:, 0], twice[2][:, 0] + twice[2][:, 1])


def latro_by_definition(logp_c, logp_y, ref_c, unfinished, beta, mu, lam=1.0):
    """LaTRO per example, one candidate at a time (Chen et al. 2024; warmup.py's docstring): the penalty replaces the raw
    reward of a cut-off warmup, the KL term is subtracted after it."""
    B, K = logp_y.shape
    batch_mean = logp_y.sum().item() / (B * K)
    raw = [[2 * batch_mean if unfinished[b, i] else logp_y[b, i].item() for i in range(K)] for b in range(B)]
    shaped = [[raw[b][i] - beta * (logp_c[b, i].item() - ref_c[b, i].item()) for i in range(K)] for b in range(B)]
    values, grads = [], torch.zeros(B, K)
    for b in range(B):
        total = 0.0
        for i in range(K):
            advantage = shaped[b][i] - sum(shaped[b][j] for j in range(K) if j != i) / (K - 1)
            total += lam * advantage * logp_c[b, i].item() + mu * logp_y[b, i].item()
            grads[b, i] = lam * advantage / K
        values.append(total / K)
    return values, grads


@pytest.mark.parametrize("beta, mu", [(0.05, 0.0), (0.5, 1.0), (0.0, 0.3)])
def test_latro_value_and_gradient_match_the_definition(beta, mu):
    ref_c = LOGP_C + torch.randn(3, 4, generator=torch.Generator().manual_seed(0))  # not the global RNG: tests' order moves it
    unfinished = torch.tensor([[False, True, False, False], [False] * 4, [True, False, False, True]])
    logp_c, logp_y = LOGP_C.clone().requires_grad_(True), LOGP_Y.clone().requires_grad_(True)
    objective, tokens, weights = objective_terms("latro", logp_c, logp_y, N_C, N_Y, 1.0, ref_logp_warmup=ref_c, kl_coef=beta,
                                                 answer_loss_weight=mu, unfinished=unfinished)
    grad_c, grad_y = torch.autograd.grad(objective.sum(), [logp_c, logp_y])
    values, expected_grad_c = latro_by_definition(LOGP_C, LOGP_Y, ref_c, unfinished, beta, mu)
    # float32 sums against float64 ones: about 1e-5 apart at worst over hundreds of draws of ref_c
    assert objective.tolist() == pytest.approx(values, rel=1e-5, abs=1e-4)
    assert torch.allclose(grad_c, expected_grad_c, atol=1e-6)
    assert torch.allclose(grad_y, torch.full((3, 4), mu / 4))  # the reward is held fixed: only the answer term
    assert torch.allclose(tokens, (N_C + mu * N_Y).mean(1)) and torch.allclose(weights, torch.full((3, 4), 0.25))


def test_latro_without_kl_penalty_or_answer_change_is_rloo():
    rloo = objective_terms("rloo", LOGP_C, LOGP_Y, N_C, N_Y, 0.5)
    latro = objective_terms("latro", LOGP_C, LOGP_Y, N_C, N_Y, 0.5, answer_loss_weight=1.0, unfinished=torch.zeros(3, 4, dtype=torch.bool))
    assert all(torch.equal(a, b) for a, b in zip(rloo, latro))
    # rloo takes the KL term too (its advantages are those of the shaped reward; the answer term
    # stays log P(y|c,x)); the cut-off penalty only where warmup.cut_off asks (tests/test_devices.py).
    kl = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).abs()
    shaped = objective_terms("rloo", LOGP_C, LOGP_Y, N_C, N_Y, 1.0, ref_logp_warmup=LOGP_C - kl, kl_coef=0.5)[0]
    on_shaped_reward = objective_terms("rloo", LOGP_C, LOGP_Y - 0.5 * kl, N_C, N_Y, 1.0)[0]
    assert torch.allclose(shaped, on_shaped_reward + (0.5 * kl).mean(1), atol=1e-5)
