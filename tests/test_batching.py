"""The order examples are trained in: random, a function of (seed, epoch), and with
train.group_by_length batches of similar length."""

import random

from warmgen.batching import epoch_order


def test_group_by_length_makes_batches_of_similar_length_in_a_random_order():
    rng = random.Random(0)
    lengths = [rng.randint(2, 30) for _ in range(1030)]
    order = epoch_order(len(lengths), seed=1, epoch=0, lengths=lengths, batch=8)
    assert sorted(order) == list(range(1030))  # every example once
    assert order == epoch_order(len(lengths), seed=1, epoch=0, lengths=lengths, batch=8)  # resumable
    assert order != epoch_order(len(lengths), seed=1, epoch=1, lengths=lengths, batch=8)
    batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert len(batches[-1]) == 1030 % 8  # the short batch is the last one, where the loop expects it
    spread = sum(max(lengths[j] for j in b) - min(lengths[j] for j in b) for b in batches) / len(batches)
    shuffled = epoch_order(len(lengths), seed=1, epoch=0)
    random_spread = sum(max(lengths[j] for j in shuffled[i : i + 8]) - min(lengths[j] for j in shuffled[i : i + 8])
                        for i in range(0, 1030, 8)) / len(batches)
    assert spread < 1 < random_spread / 10  # padding nearly gone
    firsts = [lengths[b[0]] for b in batches[:-1]]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)  # batches are not in length order
