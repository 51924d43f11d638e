"""Claims about the model: the fused nodes (dot, vsum) change no bit of the loss or of any
gradient, every gradient matches finite differences, and the KV cache is causal attention."""
import math
import os
import random

import pytest

import microgpt
from conftest import configure, doc_loss, encode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TWO_LAYERS = dict(n_layer=2, n_embd=8, n_head=2, block_size=8)
SHAPES = [{}, TWO_LAYERS]
SHAPE_IDS = ["default shape", "2 layers, n_embd 8, n_head 2, block_size 8"]
# Names from input.txt: short ones, and one longer than any block size here (it gets cut).
DOCS = ["emma", "zoe", "muhammadibrahim"]


@pytest.fixture(scope="module")
def names():
    return microgpt.load_docs(os.path.join(REPO, "input.txt"))


def make_model(shape, docs, seed=0):
    """microgpt's settings for `shape`, the vocabulary of `docs`, and fresh parameters."""
    configure(**shape)
    uchars = microgpt.vocabulary(docs)
    random.seed(seed)
    return uchars, microgpt.init_params(len(uchars) + 1)






# A reference model in the plain style of the blog post: only Value primitives and Python's
# built-in sum, no fused node. It shares the parameter Values of microgpt's state_dict.

def ref_linear(x, w):
    return [sum(wi * xi for wi, xi in zip(row, x)) for row in w]


def ref_softmax(logits):
    m = max(v.data for v in logits)
    exps = [(v - m).exp() for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def ref_rmsnorm(x):
    ms = sum(xi * xi for xi in x) / len(x)
    scale = (ms + 1e-5) ** -0.5
    return [xi * scale for xi in x]


def ref_gpt(token, pos, keys, values, state):
    head_dim = microgpt.n_embd // microgpt.n_head
    x = [t + p for t, p in zip(state["wte"][token], state["wpe"][pos])]
    x = ref_rmsnorm(x)
    for i in range(microgpt.n_layer):
        r = x
        x = ref_rmsnorm(x)
        q = ref_linear(x, state[f"layer{i}.attn_wq"])
        k = ref_linear(x, state[f"layer{i}.attn_wk"])
        v = ref_linear(x, state[f"layer{i}.attn_wv"])
        keys[i].append(k)
        values[i].append(v)
        heads = []
        for h in range(microgpt.n_head):
            lo = h * head_dim
            q_h = q[lo:lo + head_dim]
            k_h = [kt[lo:lo + head_dim] for kt in keys[i]]
            v_h = [vt[lo:lo + head_dim] for vt in values[i]]
            logits = [sum(q_h[j] * k_h[t][j] for j in range(head_dim)) / head_dim ** 0.5
                      for t in range(len(k_h))]
            weights = ref_softmax(logits)
            heads.extend(sum(weights[t] * v_h[t][j] for t in range(len(v_h)))
                         for j in range(head_dim))
        x = ref_linear(heads, state[f"layer{i}.attn_wo"])
        x = [a + b for a, b in zip(x, r)]
        r = x
        x = ref_rmsnorm(x)
        x = [xi.relu() for xi in ref_linear(x, state[f"layer{i}.mlp_fc1"])]
        x = ref_linear(x, state[f"layer{i}.mlp_fc2"])
        x = [a + b for a, b in zip(x, r)]
    return ref_linear(x, state["lm_head"])


def ref_doc_loss(tokens, state):
    n = min(microgpt.block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(microgpt.n_layer)], [[] for _ in range(microgpt.n_layer)]
    losses = []
    for pos in range(n):
        probs = ref_softmax(ref_gpt(tokens[pos], pos, keys, values, state))
        losses.append(-probs[tokens[pos + 1]].log())
    return (1 / n) * sum(losses)


def take_grads(state):
    """Every parameter's gradient, by matrix, row and column; then zero them for the next run."""
    grads = {}
    for name, mat in state.items():
        grads[name] = [[p.grad for p in row] for row in mat]
        for row in mat:
            for p in row:
                p.grad = 0
    return grads


def grad_mismatches(fused, reference):
    return [(name, i, j, g, reference[name][i][j])
            for name, mat in fused.items()
            for i, row in enumerate(mat) for j, g in enumerate(row)
            if g != reference[name][i][j]]


def compare_with_reference(docs, shape, names):
    """Loss and gradients of each doc, microgpt vs the reference: (doc, what, fused, ref) diffs."""
    uchars, state = make_model(shape, names)
    differences = []
    for doc in docs:
        tokens = encode(doc, uchars)
        fused = doc_loss(tokens, state)
        fused.backward()
        fused_grads = take_grads(state)
        reference = ref_doc_loss(tokens, state)
        reference.backward()
        reference_grads = take_grads(state)
        if fused.data != reference.data:
            differences.append((doc, "loss", fused.data, reference.data))
        differences += [(doc, f"{name}[{i}][{j}].grad", g, r)
                        for name, i, j, g, r in grad_mismatches(fused_grads, reference_grads)]
    return differences


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_fused_nodes_change_no_bit_of_the_loss_or_any_gradient(shape, names):
    # Exact equality on purpose: the claim is "same operations, same order", not "close".
    differences = compare_with_reference(DOCS, shape, names)
    shown = "\n".join(f"  {doc!r} {what}: expected {r!r} (reference), got {g!r} (microgpt)"
                      for doc, what, g, r in differences[:10])
    assert not differences, f"{len(differences)} numbers differ from the reference:\n{shown}"


def test_the_bit_for_bit_check_catches_a_regrouped_softmax(names, monkeypatch):
    # Guard on the test above: one vsum per probability computes the same values but adds the
    # gradient contributions in another order, which the printed 4 decimals do not show.
    def softmax_one_total_per_probability(logits):
        m = max(v.data for v in logits)
        exps = [(v - m).exp() for v in logits]
        return [e / microgpt.vsum(exps) for e in exps]
    monkeypatch.setattr(microgpt, "softmax", softmax_one_total_per_probability)
    differences = compare_with_reference(DOCS[:1], TWO_LAYERS, names)
    assert differences, "a softmax with a separate total per probability went unnoticed"


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


def test_every_gradient_of_a_tiny_model_matches_finite_differences():
    # Tiny so that all 480 parameters can be perturbed one by one: 2 layers, 2 heads of width 2.
    docs = ["emma", "ava", "mia", "leo", "noah"]  # a vocabulary of 9 letters + BOS
    uchars, state = make_model(dict(n_layer=2, n_embd=4, n_head=2, block_size=4), docs, seed=1)
    every = [(name, i, j) for name, mat in state.items()
             for i, row in enumerate(mat) for j in range(len(row))]
    assert len(every) == len(microgpt.parameters(state)) == 480
    check_against_finite_differences("2 layers, n_embd 4, every parameter",
                                     every, encode("noah", uchars), state)


def test_sampled_gradients_of_the_default_model_match_finite_differences(names):
    uchars, state = make_model({}, names, seed=2)
    tokens = encode("emma", uchars)
    n = min(microgpt.block_size, len(tokens) - 1)
    rng = random.Random(3)
    chosen = []
    for name, mat in state.items():
        # Rows the document reaches: its input tokens in wte, its positions in wpe, all others.
        rows = {"wte": sorted(set(tokens[:n])), "wpe": range(n)}.get(name, range(len(mat)))
        cells = [(name, i, j) for i in rows for j in range(len(mat[i]))]
        chosen += rng.sample(cells, 25)
    assert len(chosen) >= 200 and len({c[0] for c in chosen}) == len(state)
    check_against_finite_differences("default shape, 25 parameters per matrix",
                                     chosen, tokens, state)


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
def test_kv_cache_gives_the_logits_of_full_causal_attention(shape, names):
    uchars, state = make_model(shape, names, seed=4)
    for p in microgpt.parameters(state):
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
