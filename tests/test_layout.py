"""Batched log P(c|x) and log P(y|c,x) equal a per-example brute-force loop (padding, ragged warmups)."""

import pytest
import torch

import warmgen.layout

SOURCES = ["hello world", "warmup", "the cat sat on the mat"]
TARGETS = ["HH AH0 L OW1", "W AO1 R M AH2 P", "cat"]


def brute_force(model, layout, source, warmup, target, as_tensors=False):
    """Sum log-probs token by token, one unpadded sequence at a time (tensors keep the graph)."""
    head = [] if warmup is None else warmup + [layout.sep_id]
    continuation = head + target + [layout.eos_id]
    if model.config.is_encoder_decoder:
        decoder = [layout.start_id] + continuation
        logits = model(input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([decoder[:-1]])).logits[0]
        offset = 0
    else:
        sequence = source + continuation
        logits = model(input_ids=torch.tensor([sequence])).logits[0]
        offset = len(source) - 1  # logits at position p predict token p + 1
    logp_warmup = logp_target = logp_sep = 0.0
    for j, token in enumerate(continuation):
        logp = torch.log_softmax(logits[offset + j].double(), dim=-1)[token]
        logp = logp if as_tensors else logp.item()
        if j < len(head):
            logp_warmup += logp
            if j == len(head) - 1:
                logp_sep = logp
        else:
            logp_target += logp
    return logp_warmup, logp_target, len(head), len(target) + 1, logp_sep


def test_batched_scores_match_brute_force(any_family):
    model, layout, _ = any_family
    tok = layout.tokenizer
    sources = [layout.source_ids(s)[0] for s in SOURCES]
    targets = [layout.target_ids(t)[0] for t in TARGETS]
    assert len({len(s) for s in sources}) == 3, "sources of different lengths exercise padding"
    # k = 3 candidates per example: ragged warmups, an empty warmup, and SFT rows without <sep>.
    warmups = [
        tok("cat sat", add_special_tokens=False)["input_ids"], [], tok("W", add_special_tokens=False)["input_ids"],
        tok("hello hello world", add_special_tokens=False)["input_ids"], None, [],
        [], tok("mat", add_special_tokens=False)["input_ids"], tok("AH0 AH0 AH0 AH0 AH0", add_special_tokens=False)["input_ids"],
    ]
    with torch.no_grad():
        scores = layout.score(model, sources, warmups, [t for t in targets for _ in range(3)])
    for r, warmup in enumerate(warmups):
        expected = brute_force(model, layout, sources[r // 3], warmup, targets[r // 3])
        assert abs(scores.logp_warmup[r].item() - expected[0]) < 1e-5
        assert abs(scores.logp_target[r].item() - expected[1]) < 1e-5
        assert (scores.n_warmup[r].item(), scores.n_target[r].item()) == expected[2:4]
        assert abs(scores.logp_sep[r].item() - expected[4]) < 1e-5  # the closing <sep>'s own term (LaTRO leaves it out)
    assert scores.logp_warmup[4].item() == 0.0 and scores.n_warmup[4].item() == 0


def test_ragged_candidate_counts_match_brute_force_and_gradients(any_family):
    """Sources with 1, 3 and 2 candidates: values and parameter gradients equal the unbatched loop
    (for decoder-only models this checks prefix sharing: one prompt pass, gradients summed over candidates)."""
    model, layout, _ = any_family
    tok = lambda text: layout.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    sources = [layout.source_ids(s)[0] for s in SOURCES]
    targets = [layout.target_ids(t)[0] for t in TARGETS]
    counts = [1, 3, 2]
    warmups = [tok("cat"), tok("hello"), [], tok("W AO1 W"), None, tok("mat mat")]
    owners = [0, 1, 1, 1, 2, 2]
    scores = layout.score(model, sources, warmups, [targets[o] for o in owners], counts)
    (scores.logp_warmup.sum() + 2 * scores.logp_target.sum()).backward()
    batched = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    total = 0
    for r, (owner, warmup) in enumerate(zip(owners, warmups)):
        expected = brute_force(model, layout, sources[owner], warmup, targets[owner], as_tensors=True)
        assert abs(scores.logp_warmup[r].item() - torch.as_tensor(expected[0]).item()) < 1e-5
        assert abs(scores.logp_target[r].item() - expected[1].item()) < 1e-5
        total = total + expected[0] + 2 * expected[1]
    total.backward()
    for a, p in zip(batched, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-5)


def test_prompt_tokens_carry_no_loss(any_family):
    """Changing the prompt changes scores only through conditioning, and counts exclude it."""
    model, layout, _ = any_family
    targets = [layout.target_ids("cat")[0]]
    short = layout.score(model, [layout.source_ids("hi")[0]], [None], targets)
    long = layout.score(model, [layout.source_ids("hello world " * 5)[0]], [None], targets)
    assert short.n_target.item() == long.n_target.item() == len(targets[0]) + 1


def test_scores_are_differentiable(tiny_t5):
    model, layout, _ = tiny_t5
    scores = layout.score(model, [layout.source_ids("hello")[0]], [[5, 6], []], [layout.target_ids("HH")[0]] * 2)
    (scores.logp_warmup.sum() + scores.logp_target.sum()).backward()
    assert model.get_encoder().embed_tokens.weight.grad is not None


def test_an_fsdp_sharded_encoder_decoder_runs_its_encoder_once_per_row_with_the_same_scores_and_gradients(tiny_t5, monkeypatch):
    # FSDP gathers the shared embedding only inside the model's forward, so the encoder must run there (distributed.py;
    # tests/test_distributed.py shards T5 for real).
    model, layout, _ = tiny_t5
    sources = [layout.source_ids(s)[0] for s in SOURCES]
    warmups = [[5, 6], [], None, [7], [8, 9, 10], [11]]
    targets = [layout.target_ids(TARGETS[o])[0] for o in (0, 1, 1, 1, 2, 2)]
    encoder_batches = []
    model.get_encoder().register_forward_hook(lambda module, args, kwargs, out: encoder_batches.append(len(kwargs["input_ids"])),
                                              with_kwargs=True)
    results = []
    for sharded in (False, True):
        monkeypatch.setattr(warmgen.layout, "_fsdp_sharded", lambda model, sharded=sharded: sharded)
        model.zero_grad()
        scores = layout.score(model, sources, warmups, targets, [1, 3, 2])
        (scores.logp_warmup.sum() + 2 * scores.logp_target.sum()).backward()
        results.append((scores, [p.grad.clone() for p in model.parameters()]))
    assert encoder_batches == [3, 6]
    (shared, shared_grads), (per_row, per_row_grads) = results
    for field in ("logp_warmup", "logp_target", "n_warmup", "n_target"):
        torch.testing.assert_close(getattr(per_row, field), getattr(shared, field), atol=1e-5, rtol=0)
    for a, b in zip(shared_grads, per_row_grads):  # float32 sums in another order: equal to a few ulps of gradients ~25 in size
        torch.testing.assert_close(b, a, atol=1e-5, rtol=2e-6)


@pytest.mark.parametrize("fast", [True, False])
def test_a_long_source_keeps_its_first_tokens_with_fast_and_slow_tokenizers(fast):
    """A slow tokenizer has no character offsets: the tokens kept are decoded instead. Either way the prompt
    holds the source's first max_source_length tokens and the template around them stays whole."""
    from transformers import ByT5Tokenizer, PreTrainedTokenizerFast

    from warmgen.config import WarmupConfig
    from warmgen.layout import CausalLayout

    slow = ByT5Tokenizer()  # bytes: one token a character, so the expected cut is plain to read
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=_byte_tokenizer(), eos_token="</s>", pad_token="<pad>") if fast else slow
    assert tokenizer.is_fast == fast
    config = WarmupConfig()
    config.data.max_source_length = 5
    layout = CausalLayout(tokenizer, tokenizer.eos_token_id, config)
    for text, kept, truncated in (("abcdefghij", "abcde", True), ("abc", "abc", False)):
        ids, cut = layout.source_ids(text)
        assert cut == truncated
        assert ids == layout.bos + tokenizer(config.model.prompt_template.replace("{source}", kept), add_special_tokens=False)["input_ids"]


def _byte_tokenizer():
    """A fast tokenizer with one token per character, from the tokenizers library."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    alphabet = sorted(set("abcdefghijklmnopqrstuvwxyzInputOutp:\n "))
    tokenizer = Tokenizer(models.WordLevel({c: i for i, c in enumerate(["</s>", "<pad>", "[UNK]", *alphabet])}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return tokenizer
