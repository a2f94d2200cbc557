"""warmup_step: the objective it returns is the one objective_terms defines, for every objective."""

import pytest
import torch

from warmgen.config import WarmupConfig
from warmgen.warmup import objective_terms, warmup_step

from conftest import tiny


@pytest.mark.parametrize("objective", ["best_of_k", "marginal", "rloo"])
@pytest.mark.parametrize("preset", ["t5-tiny", "llama-tiny"])
def test_step_objective_and_gradient_match_the_definition(preset, objective):
    """best_of_k back-propagates only through the chosen candidate; the value and gradient must not change."""
    model, layout, _ = tiny(preset)  # eval mode: no dropout, so both computations see the same model
    config = WarmupConfig(objective=objective, num_warmups=3, max_warmup_length=4, warmup_loss_weight=0.5)
    sources = [layout.source_ids(s)[0] for s in ("hello world", "warmup")]
    targets = [layout.target_ids(t)[0] for t in ("HH AH0 L OW1", "W AO1 R M")]
    torch.manual_seed(3)
    step = warmup_step(model, layout, sources, targets, config)
    (step.objective / step.tokens).backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    scores = layout.score(model, sources, step.warmups, [t for t in targets for _ in range(3)])
    shape = (2, 3)
    objective_value, tokens, weights = objective_terms(objective, scores.logp_warmup.view(shape), scores.logp_target.view(shape),
                                                       scores.n_warmup.view(shape), scores.n_target.view(shape), 0.5)
    (objective_value.sum() / tokens.sum()).backward()
    assert step.objective.item() == pytest.approx(objective_value.sum().item(), rel=1e-5)
    assert step.tokens.item() == pytest.approx(tokens.sum().item())
    assert torch.equal(step.weights, weights)
    for a, p in zip(fast, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
