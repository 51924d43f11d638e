"""Claims about the model: every gradient of a small 2-layer model matches finite differences
(a gradient check, which builds on tests/test_autograd.py's and runs after them, when the command
line names that file first), and gpt() with its KV cache gives the logits of full causal attention
over the whole sequence, bit for bit. (That the model's numbers agree with an independent PyTorch
model is tests/test_torch.py; that the Efficiency section changes none of them,
tests/test_efficiency.py.)"""
import math

import pytest

import microgpt
from helpers import INPUT, doc_loss, encode, new_model, rounding_bound


# Central differences of the loss, parameter by parameter. Their rounding: each of the two
# losses is off by at most the rounding bound (computed once, where the parameters are: a step
# of H changes it by nothing that counts), so their difference over 2H by at most bound / H
# (about 5e-9 here, at H = 1e-6). Their truncation, H**2 * L''' / 6, is 4 times as
# large at 2H, so the difference between the steps H and 2H is 3 times it, give or take both
# steps' rounding; it is measured only where rounding alone does not explain a difference.
# Twice the sum, for the higher-order terms: about 1e-8 in all. Most gradients here are 1e-4
# to 0.7, so a wrong derivative shows.
H = 1e-6


def central_difference(tokens, state_dict, p, h):
    saved = p.data
    p.data = saved + h
    up = doc_loss(tokens, state_dict).data
    p.data = saved - h
    down = doc_loss(tokens, state_dict).data
    p.data = saved
    return (up - down) / ((saved + h) - (saved - h))  # the points' distance, as floats have it


def test_every_gradient_of_a_tiny_two_layer_model_matches_finite_differences():
    """Run after the autograd engine's checks, with -x (README, Break it to learn it), it fails
    only for an edit that they do not catch: one to the model itself."""
    # Tiny, so that all 480 parameters can be moved one by one: 2 layers of 2 heads of width 2,
    # and block_size 4, which cuts "noah" (5 predictions) to 4
    docs = ["emma", "ava", "mia", "leo", "noah"]  # 9 letters and BOS: 10 tokens
    uchars, state_dict, _ = new_model(docs, seed=1, n_layer=2, n_embd=4, n_head=2, block_size=4)
    tokens = encode("noah", uchars)
    loss = doc_loss(tokens, state_dict)
    loss.backward()  # as written: the gradients, and the graph for the rounding bound
    rounding = rounding_bound(loss) / H
    failures, off = [], {}
    with microgpt.efficiency():  # the same losses, bit for bit, 4 times as fast
        for name, mat in state_dict.items():
            off[name] = 0
            for i, row in enumerate(mat):
                for j, p in enumerate(row):
                    d1 = central_difference(tokens, state_dict, p, H)
                    if abs(p.grad - d1) <= 2 * rounding:
                        continue
                    d2 = central_difference(tokens, state_dict, p, 2 * H)
                    truncation = (abs(d2 - d1) + rounding + rounding / 2) / 3
                    tolerance = 2 * (truncation + rounding)
                    if abs(p.grad - d1) > tolerance:
                        off[name] += 1
                        failures.append(f"d loss/d {name}[{i}][{j}] = {p.grad!r}, but finite "
                                        f"differences give {d1!r} (within {tolerance:.2g})")
    sizes = {name: len(mat) * len(mat[0]) for name, mat in state_dict.items()}
    by_matrix = ", ".join(f"{name} {off[name]} of {sizes[name]}" for name in off if off[name])
    right = ", ".join(name for name in off if not off[name]) or "none"
    assert len(failures) == 0, (
        f"the loss of 'noah' in a tiny 2-layer model: backward gave {failures[0]}; "
        f"{len(failures)} of {sum(sizes.values())} gradients are off, by matrix: {by_matrix} "
        f"(all right: {right}). If tests/test_autograd.py passes, the loss depends on a number "
        f"that is not in the graph (a plain float taken from .data, say), which backward takes "
        f"for a constant: no gradient flows back through it.\n"
        + "\n".join(failures[1:10]))


# The KV cache: gpt(), one position at a time, gives the logits of a pass over the whole
# sequence at once, in which each position attends to itself and the positions before it (a
# causal mask). That pass, below, is written from microgpt.py's Architecture section, in plain
# floats, with the operations in the order the Value class does them: sums from 0, left to
# right, as sum() adds Values; x / y as x * y ** -1, as Value.__truediv__ has it. So the two must
# agree to the last bit.

def total(terms):
    """((0 + t0) + t1) + ..., as sum() adds Values. (Python 3.12's sum() of floats rounds less
    often, so it is not the arithmetic of microgpt's sums.)"""
    s = 0
    for t in terms:
        s += t
    return s


def causal_attention_logits(tokens, state_dict):
    """The logits at every position of tokens, all positions at once, no cache."""
    w = {name: [[p.data for p in row] for row in mat] for name, mat in state_dict.items()}
    n_embd, n_head = microgpt.n_embd, microgpt.n_head
    seq, head_dim = len(tokens), n_embd // n_head

    def matvec(m, x):
        return [total(a * b for a, b in zip(row, x)) for row in m]

    def rmsnorm(x):
        scale = (total(a * a for a in x) * len(x) ** -1 + 1e-5) ** -0.5
        return [a * scale for a in x]

    def add(x, y):
        return [a + b for a, b in zip(x, y)]

    xs = [rmsnorm(add(w["wte"][tok], w["wpe"][t])) for t, tok in enumerate(tokens)]
    for layer in range(microgpt.n_layer):
        normed = [rmsnorm(x) for x in xs]
        q, k, v = ([matvec(w[f"layer{layer}.attn_{m}"], x) for x in normed]
                   for m in ("wq", "wk", "wv"))
        mixed = [[0.0] * n_embd for _ in range(seq)]
        for h in range(n_head):
            dims = range(h * head_dim, (h + 1) * head_dim)
            for t in range(seq):
                # position s > t is masked out: its score is -inf, its weight exp(-inf) = 0
                scores = [total(q[t][j] * k[s][j] for j in dims) * (head_dim ** 0.5) ** -1
                          if s <= t else -math.inf for s in range(seq)]
                top = max(scores)
                exps = [math.exp(score - top) for score in scores]
                inverse = total(exps) ** -1
                weights = [e * inverse for e in exps]
                for j in dims:
                    mixed[t][j] = total(weights[s] * v[s][j] for s in range(seq))
        xs = [add(matvec(w[f"layer{layer}.attn_wo"], m), x) for m, x in zip(mixed, xs)]
        hidden = [[max(0.0, a) for a in matvec(w[f"layer{layer}.mlp_fc1"], rmsnorm(x))]
                  for x in xs]
        xs = [add(matvec(w[f"layer{layer}.mlp_fc2"], hid), x) for hid, x in zip(hidden, xs)]
    return [matvec(w["lm_head"], x) for x in xs]


TWO_LAYERS = dict(n_layer=2, n_embd=8, n_head=2, block_size=8)
SHAPES = [{}, TWO_LAYERS]
SHAPE_IDS = ["default shape", "2 layers, n_embd 8, n_head 2, block_size 8"]
# Names of input.txt: short ones, and two longer than block_size 8 (cut to it)
DOCS = ["emma", "zoe", "ava", "christopher", "muhammadibrahim"]


@pytest.fixture(scope="module")
def names():
    with open(INPUT, encoding="utf-8") as f:
        return f.read().split()


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_the_kv_cache_gives_the_logits_of_full_causal_attention_bit_for_bit(
        shape, names, efficient):
    uchars, state_dict, params = new_model(names, seed=4, **shape)
    for p in params:
        p.data *= 4  # sharper attention than at first, so that a wrong mask or cache would show
    for doc in DOCS:
        tokens = encode(doc, uchars)
        tokens = tokens[:min(microgpt.block_size, len(tokens) - 1)]  # the positions trained on
        expected = causal_attention_logits(tokens, state_dict)
        keys = [[] for _ in range(microgpt.n_layer)]
        values = [[] for _ in range(microgpt.n_layer)]
        for pos, token in enumerate(tokens):
            got = [logit.data for logit in microgpt.gpt(token, pos, keys, values, state_dict)]
            differ = [(c, e, g) for c, (e, g) in enumerate(zip(expected[pos], got)) if e != g]
            assert not differ, (
                f"{doc!r} position {pos}: {len(differ)} logits differ; first (token, causal "
                f"attention, KV cache): {differ[:3]}")
