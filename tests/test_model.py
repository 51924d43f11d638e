"""Claims about the model: every gradient matches finite differences, on every parameter of a
small 2-layer model, and the KV cache gives the logits of full causal attention. (That the
whole model's numbers agree with an independent PyTorch model is tests/test_torch.py; that the
Efficiency section changes none of them, tests/test_efficiency.py.)"""
import math

import pytest

import microgpt
from conftest import INPUT, doc_loss, encode, new_model

TWO_LAYERS = dict(n_layer=2, n_embd=8, n_head=2, block_size=8)
SHAPES = [{}, TWO_LAYERS]
SHAPE_IDS = ["default shape", "2 layers, n_embd 8, n_head 2, block_size 8"]
# Names from input.txt: short ones, and one longer than any block size here (it gets cut).
DOCS = ["emma", "zoe", "muhammadibrahim"]


@pytest.fixture(scope="module")
def names():
    with open(INPUT, encoding="utf-8") as f:
        return f.read().split()






# Gradients vs central finite differences on the loss: FD_H = 1e-5 keeps truncation
# (FD_H**2 * |L'''| / 6, ~1e-10 here) and rounding (1e-16 * |L| / FD_H plus the ~1e-15 noise of
# recomputing the loss, over FD_H: ~1e-10) far below FD_TOL = 1e-8; the worst difference seen
# is 3.3e-10. Most gradients are 1e-4 to 0.6 (a few near 1e-6), so a wrong derivative shows.
FD_H = 1e-5
FD_TOL = 1e-8


def check_against_finite_differences(label, chosen, tokens, state):
    """chosen: (matrix, row, col) triples. Backprop once, then perturb each parameter alone."""
    loss = doc_loss(tokens, state)
    loss.backward()
    failures = []
    for name, i, j in chosen:
        p = state[name][i][j]
        saved = p.data
        p.data = saved + FD_H
        up = doc_loss(tokens, state).data
        p.data = saved - FD_H
        down = doc_loss(tokens, state).data
        p.data = saved
        fd = (up - down) / (2 * FD_H)
        if not abs(p.grad - fd) <= FD_TOL:
            failures.append(f"  {name}[{i}][{j}]: expected {fd!r} (finite differences), "
                            f"got {p.grad!r} (backward), difference {p.grad - fd:.3g}")
    assert not failures, (f"{label}: {len(failures)} of {len(chosen)} gradients are off:\n"
                          + "\n".join(failures[:10]))


def test_every_gradient_of_a_tiny_model_matches_finite_differences(efficient):
    # Tiny so that all 480 parameters can be perturbed one by one: 2 layers, 2 heads of width 2.
    docs = ["emma", "ava", "mia", "leo", "noah"]  # a vocabulary of 9 letters + BOS
    uchars, state, params = new_model(docs, seed=1, n_layer=2, n_embd=4, n_head=2, block_size=4)
    every = [(name, i, j) for name, mat in state.items()
             for i, row in enumerate(mat) for j in range(len(row))]
    assert len(every) == len(params) == 480
    check_against_finite_differences("2 layers, n_embd 4, every parameter",
                                     every, encode("noah", uchars), state)


# The KV cache: position-by-position logits equal a full-sequence causal forward pass.

def causal_attention_logits(tokens, state):
    """All positions at once in plain floats, no cache: a causal mask hides later positions."""
    w = {name: [[p.data for p in row] for row in mat] for name, mat in state.items()}
    n_layer, n_embd, n_head = microgpt.n_layer, microgpt.n_embd, microgpt.n_head
    seq, head_dim = len(tokens), n_embd // n_head

    def matvec(m, x):
        return [sum(a * b for a, b in zip(row, x)) for row in m]

    def rmsnorm(x):
        scale = 1 / math.sqrt(sum(a * a for a in x) / len(x) + 1e-5)
        return [a * scale for a in x]

    xs = [rmsnorm([a + b for a, b in zip(w["wte"][tok], w["wpe"][t])])
          for t, tok in enumerate(tokens)]
    for layer in range(n_layer):
        normed = [rmsnorm(x) for x in xs]
        q, k, v = ([matvec(w[f"layer{layer}.attn_{m}"], x) for x in normed]
                   for m in ("wq", "wk", "wv"))
        attended = [[0.0] * n_embd for _ in range(seq)]
        for h in range(microgpt.n_head):
            dims = range(h * head_dim, (h + 1) * head_dim)
            for t in range(seq):
                scores = [sum(q[t][j] * k[s][j] for j in dims) / math.sqrt(head_dim)
                          if s <= t else -math.inf for s in range(seq)]
                top = max(scores)
                exps = [math.exp(sc - top) for sc in scores]  # exp(-inf) = 0: masked out
                total = sum(exps)
                for j in dims:
                    attended[t][j] = sum(e / total * v[s][j] for s, e in enumerate(exps))
        xs = [[a + b for a, b in zip(matvec(w[f"layer{layer}.attn_wo"], o), x)]
              for o, x in zip(attended, xs)]
        hidden = [[max(0.0, a) for a in matvec(w[f"layer{layer}.mlp_fc1"], rmsnorm(x))]
                  for x in xs]
        xs = [[a + b for a, b in zip(matvec(w[f"layer{layer}.mlp_fc2"], hid), x)]
              for hid, x in zip(hidden, xs)]
    return [matvec(w["lm_head"], x) for x in xs]


# Both sides compute the same formulas in a different order (and a / b vs a * b ** -1), so
# they differ by rounding: at most 5.3e-15 seen, on logits up to ~10. 1e-12 allows for that;
# reading one wrong position or a future key moves a logit by far more.
KV_TOL = 1e-12


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_kv_cache_gives_the_logits_of_full_causal_attention(shape, names, efficient):
    uchars, state, params = new_model(names, seed=4, **shape)
    for p in params:
        p.data *= 4  # sharper attention than at initialisation, so a wrong mask would show
    for doc in DOCS + ["ava", "christopher"]:
        tokens = encode(doc, uchars)
        tokens = tokens[:min(microgpt.block_size, len(tokens) - 1)]  # the positions trained on
        expected = causal_attention_logits(tokens, state)
        keys, values = [[] for _ in range(microgpt.n_layer)], [[] for _ in range(microgpt.n_layer)]
        for pos, token in enumerate(tokens):
            got = [v.data for v in microgpt.gpt(token, pos, keys, values, state)]
            worst = max(range(len(got)), key=lambda c: abs(got[c] - expected[pos][c]))
            assert abs(got[worst] - expected[pos][worst]) <= KV_TOL, (
                f"{doc!r} position {pos}, logit {worst}: expected {expected[pos][worst]!r} "
                f"(causal attention), got {got[worst]!r} (KV cache)")
