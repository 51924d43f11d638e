"""Claims about the whole network, checked against an independent float64 PyTorch model.

microgpt computes one number at a time, with its own autograd and its own Adam. The PyTorch model
below is written from the architecture that microgpt.py's comments describe (GPT-2 with RMSNorm,
no biases, ReLU), not from its code: whole-sequence tensor operations, causal attention by a mask
instead of a KV cache, PyTorch's autograd and PyTorch's Adam. Started from microgpt's initial
weights, the two agree to rounding error:

- the loss and the gradient of every parameter, on names from input.txt and on a document longer
  than block_size (both cut it to its first block_size positions), for the default shape and for
  a 2-layer shape;
- the loss of each of 20 steps of microgpt.train (Adam, learning rate decayed linearly to 0), and
  every parameter after them, for both shapes.

So microgpt's forward pass, backward pass and optimizer compute what the architecture says they
do. The tests are skipped when torch is not installed (see the reason below).
"""
import contextlib
import io
import math

import pytest

import microgpt
from conftest import INPUT, configure, doc_loss, encode, new_model

torch = pytest.importorskip(
    "torch", reason="torch is not installed, so microgpt is not compared with PyTorch; to run "
    "these tests: python -m pip install \"torch==2.13.0\"")

from torch.optim.adam import adam  # noqa: E402

F64 = torch.float64

# Tolerances. float64 rounds each operation to within 2**-53 = 1.1e-16 relative (machine epsilon
# 2.2e-16). A gradient here is a sum of a few hundred products (dot products of up to 4 * n_embd
# = 64 terms, over up to 16 positions, through one or two layers), and PyTorch adds them in
# another order and groups the arithmetic differently (matrix products, log_softmax, rsqrt).
# Each such sum is off by at most a few hundred roundings of its largest terms, which are about
# the size of the largest gradient: ~1e-14 of it at worst. Measured over the 10 cases below: at
# most 5.8e-16 of the largest gradient (a few ulps). GRAD_TOL = 1e-13 is 170 times that; a real
# mistake is far above it (rmsnorm's epsilon 1e-6 instead of 1e-5 misses by 7e-4).
GRAD_TOL = 1e-13
# The loss (~3.3) is the mean of -log(probability) over the positions: the same argument,
# relative to the loss. Measured: at most 2.8e-16 relative (2 ulps), at every step of training.
LOSS_TOL = 1e-13
# After 20 Adam steps, relative to the largest distance any parameter moved (~0.1, the sum of
# the 20 learning rates). Each step moves a parameter by lr_t * m_hat / (sqrt(v_hat) + eps), at
# most ~lr_t. That ratio does not depend on the gradients' size, so what carries over is each
# gradient's error relative to itself: ~1e-16 for most, but up to 1e-11 for the few that are a
# millionth of the largest (measured), so a step's error is ~1e-16 * lr_t, and could reach
# ~1e-11 * lr_t for a parameter whose gradient stays that small. Measured: 2.3e-15 of the largest
# movement (2.4e-16 absolute), and 1.6e-15 after 100 steps, so no drift. PARAM_TOL = 1e-12 is
# 400 times the measurement; a wrong beta, bias correction or learning-rate schedule misses by
# more than 1e-6.
PARAM_TOL = 1e-12

SHAPES = [dict(n_layer=1, n_embd=16, n_head=4, block_size=16),  # microgpt's defaults
          dict(n_layer=2, n_embd=8, n_head=2, block_size=8)]
SHAPE_IDS = ["default shape", "2 layers, n_embd 8, n_head 2, block_size 8"]
# Names from input.txt, of 3 to 15 letters; the longest fills block_size 16 exactly, and the
# others from "isabella" on are longer than block_size 8. input.txt's longest name has 15 letters,
# so two of its names run together make a document longer than block_size 16 too.
LONG_DOC = "oluwadarasimi" + "isabella"
DOCS = ["emma", "zoe", "isabella", "muhammadibrahim", LONG_DOC]
NUM_STEPS = 20


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tensors this small gain nothing from threads, and on a busy machine PyTorch's waiting
    threads slow each operation down many times over."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uchars():
    """The vocabulary of input.txt, as microgpt makes it."""
    with open(INPUT, encoding="utf-8") as f:
        names = f.read().split()
    assert set(DOCS[:-1]) <= set(names), "the test's names are not all in input.txt"
    return sorted(set("".join(names)))


def initial_weights(uchars):
    """microgpt's first weights for the current shape: (state_dict, params)."""
    _, state_dict, params = new_model(uchars, seed=microgpt.seed)
    return state_dict, params


# microgpt's side: conftest.doc_loss, the loss of one document exactly as microgpt.train builds it.


# The PyTorch model, written from the architecture ----------------------------------------------

def as_tensors(state_dict):
    """A float64 leaf tensor per weight matrix, a copy of the Values' numbers."""
    return {name: torch.tensor([[p.data for p in row] for row in matrix], dtype=F64,
                               requires_grad=True)
            for name, matrix in state_dict.items()}


def rmsnorm(x):  # each row scaled to a mean square of 1; no learned gain
    return x * (x.pow(2).mean(dim=-1, keepdim=True) + 1e-5).rsqrt()


def torch_loss(w, tokens):
    """Mean cross-entropy of predicting tokens[1:] from tokens[:-1], over at most block_size
    positions, all positions at once."""
    n_layer, n_embd, n_head = microgpt.n_layer, microgpt.n_embd, microgpt.n_head
    head_dim = n_embd // n_head
    n = min(microgpt.block_size, len(tokens) - 1)
    inputs, targets = torch.tensor(tokens[:n]), torch.tensor(tokens[1:n + 1])
    future = torch.ones(n, n, dtype=torch.bool).triu(diagonal=1)  # row t may not see t' > t

    def heads(y):  # [n, n_embd] -> [n_head, n, head_dim]: head h has dims h*hd .. (h+1)*hd - 1
        return y.view(n, n_head, head_dim).transpose(0, 1)

    x = rmsnorm(w["wte"][inputs] + w["wpe"][:n])  # [n, n_embd]
    for i in range(n_layer):
        layer = {name: w[f"layer{i}.{name}"] for name in
                 ("attn_wq", "attn_wk", "attn_wv", "attn_wo", "mlp_fc1", "mlp_fc2")}
        h = rmsnorm(x)
        q, k, v = (heads(h @ layer[name].T) for name in ("attn_wq", "attn_wk", "attn_wv"))
        scores = (q @ k.transpose(1, 2)) / math.sqrt(head_dim)  # [n_head, n, n]
        attention = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        mixed = (attention @ v).transpose(0, 1).reshape(n, n_embd)  # heads concatenated
        x = x + mixed @ layer["attn_wo"].T
        x = x + torch.relu(rmsnorm(x) @ layer["mlp_fc1"].T) @ layer["mlp_fc2"].T
    logits = x @ w["lm_head"].T  # [n, vocab_size]
    return torch.nn.functional.cross_entropy(logits, targets)  # mean of -log softmax[target]


# Comparing --------------------------------------------------------------------------------------

def largest(tensors):
    return max(t.abs().max().item() for t in tensors.values())


def worst_difference(ours, theirs, scale):
    """(largest |difference| / scale, message) for two dicts of matrices, microgpt's (lists of
    rows of floats) and PyTorch's (tensors), compared entry by entry, matrix by matrix; the
    message names the worst entry and shows both numbers."""
    worst, message = -1.0, ""
    for name, matrix in ours.items():
        diff = (torch.tensor(matrix, dtype=F64) - theirs[name]).abs()
        flat = diff.argmax().item()
        row, col = divmod(flat, diff.shape[1])
        relative = diff[row, col].item() / scale
        if relative > worst:
            worst = relative
            message = (f"{name}[{row}][{col}]: microgpt {matrix[row][col]!r}, "
                       f"PyTorch {theirs[name][row, col].item()!r}, |difference| "
                       f"{diff[row, col].item():.3g} = {relative:.3g} x {scale:.3g}")
    return worst, message


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_pytorch_gives_the_same_loss_and_gradients(shape, uchars, efficient):
    configure(**shape)
    assert len(LONG_DOC) + 1 > microgpt.block_size, "no document is cut to block_size"
    state_dict, params = initial_weights(uchars)
    weights = as_tensors(state_dict)
    for doc in DOCS:
        tokens = encode(doc, uchars)
        loss = doc_loss(tokens, state_dict)
        loss.backward()
        grads = {name: [[p.grad for p in row] for row in matrix]
                 for name, matrix in state_dict.items()}
        for p in params:
            p.grad = 0

        for t in weights.values():
            t.grad = None
        expected = torch_loss(weights, tokens)
        expected.backward()

        loss_diff = abs(loss.data - expected.item()) / abs(expected.item())
        assert loss_diff <= LOSS_TOL, \
            f"{doc!r}: loss {loss.data!r}, PyTorch {expected.item()!r} ({loss_diff:.3g} relative)"
        expected_grads = {name: t.grad for name, t in weights.items()}
        worst, where = worst_difference(grads, expected_grads, largest(expected_grads))
        assert worst <= GRAD_TOL, \
            f"{doc!r}: a gradient differs by more than {GRAD_TOL} x the largest gradient: {where}"


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_twenty_adam_steps_match_pytorch(shape, uchars, efficient):
    configure(**shape, num_steps=NUM_STEPS)
    state_dict, params = initial_weights(uchars)
    weights = as_tensors(state_dict)
    initial = {name: t.detach().clone() for name, t in weights.items()}

    losses = []  # train() adds each step's loss
    with contextlib.redirect_stdout(io.StringIO()):  # one progress line per step
        microgpt.train(DOCS, uchars, len(uchars), state_dict, params, losses)

    # PyTorch's Adam: torch.optim.adam.adam is the function that torch.optim.Adam.step runs (the
    # class itself would first import torch._dynamo, 1.3 s). At step t = 1, 2, ... it computes
    #   m = m + (1 - b1) * (g - m)            (= b1 * m + (1 - b1) * g)
    #   v = b2 * v + (1 - b2) * g * g
    #   p -= lr / (1 - b1 ** t) * m / (sqrt(v) / sqrt(1 - b2 ** t) + eps)
    # which is lr * m_hat / (sqrt(v_hat) + eps): microgpt's update, rounded differently.
    tensors = list(weights.values())
    m, v = [torch.zeros_like(p) for p in tensors], [torch.zeros_like(p) for p in tensors]
    steps = [torch.tensor(0.0, dtype=F64) for _ in tensors]  # adam() counts them up
    expected_losses = []
    for step in range(NUM_STEPS):
        for p in tensors:
            p.grad = None
        loss = torch_loss(weights, encode(DOCS[step % len(DOCS)], uchars))
        loss.backward()
        expected_losses.append(loss.item())
        with torch.no_grad():
            adam(tensors, [p.grad for p in tensors], m, v, [], steps, foreach=False,
                 lr=microgpt.learning_rate * (1 - step / NUM_STEPS), beta1=microgpt.beta1,
                 beta2=microgpt.beta2, eps=microgpt.eps_adam, weight_decay=0, amsgrad=False,
                 maximize=False)

    assert len(losses) == NUM_STEPS, f"{len(losses)} losses for {NUM_STEPS} steps"
    for step, (ours, theirs) in enumerate(zip(losses, expected_losses)):
        relative = abs(ours - theirs) / theirs
        assert relative <= LOSS_TOL, \
            f"step {step + 1}: loss {ours!r}, PyTorch {theirs!r} ({relative:.3g} relative)"
    trained = {name: [[p.data for p in row] for row in matrix]
               for name, matrix in state_dict.items()}
    movement = largest({name: t.detach() - initial[name] for name, t in weights.items()})
    worst, where = worst_difference(trained, {k: t.detach() for k, t in weights.items()}, movement)
    assert worst <= PARAM_TOL, (f"after {NUM_STEPS} Adam steps, a parameter differs by more than "
                                f"{PARAM_TOL} x the largest movement of a parameter: {where}")
