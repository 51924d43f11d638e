"""Claims about the whole network, checked against an independent float64 PyTorch model.

microgpt computes one number at a time, with its own autograd and its own Adam. The PyTorch model
below is written from the architecture that microgpt.py's comments describe (GPT-2 with RMSNorm,
no biases, ReLU), not from its code: whole-sequence tensor operations, causal attention by a mask
instead of a KV cache, PyTorch's autograd, and Adam as its paper writes it, in tensors. Started
from microgpt's first weights, the two agree to rounding error:

- the loss and the gradient of every parameter, on names from input.txt and on a document longer
  than block_size (both cut it to its first block_size positions), for the default shape and for
  a 2-layer shape;
- the loss of each of 20 steps of microgpt.train() (Adam, its learning rate decayed linearly to
  0), and every parameter after them, for both shapes.

So microgpt's forward pass, backward pass and optimizer compute what the architecture says they
do. The tests are skipped when torch is not installed (see the reason below)."""
import math

import pytest

import microgpt
from helpers import INPUT, configure, doc_loss, encode, new_model, quietly
from microgpt import Value

torch = F64 = None  # set by the fixture below, in the process that runs these tests only
U = 2.0 ** -53  # float64's unit roundoff: + and * are off by at most U times their result

SHAPES = [dict(n_layer=1, n_embd=16, n_head=4, block_size=16),  # microgpt's defaults
          dict(n_layer=2, n_embd=8, n_head=2, block_size=8)]
SHAPE_IDS = ["default shape", "2 layers, n_embd 8, n_head 2, block_size 8"]
# Names from input.txt, of 3 to 15 letters: the longest fills block_size 16 exactly, and those
# from "isabella" on are longer than block_size 8. input.txt's longest name has 15 letters, so
# two of its names run together make a document longer than block_size 16 too.
LONG_DOC = "oluwadarasimi" + "isabella"
DOCS = ["emma", "zoe", "isabella", "muhammadibrahim", LONG_DOC]
NUM_STEPS = 20


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """torch, imported here rather than at the top, so that only the pytest-xdist worker that
    runs these tests pays for importing it; with one thread: tensors this small gain nothing
    from threads, and on a busy machine PyTorch's waiting threads slow each operation down many
    times over."""
    global torch, F64
    torch = pytest.importorskip(
        "torch", reason="torch is not installed, so microgpt is not compared with PyTorch: "
        "python -m pip install torch --index-url https://download.pytorch.org/whl/cpu")
    F64 = torch.float64
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


# Tolerances. Both programs compute the same numbers in float64, where each operation rounds by
# at most U of its result (2 U for the C library's exp, log and pow); they differ only in how
# they group the arithmetic (PyTorch: blocked matrix products, a log-softmax, rsqrt).
#
# The loss. How far rounding can have moved microgpt's loss is computed from its graph, to first
# order: each node's rounding, times how much the loss moves when that node does (its grad,
# which backward has computed). A fused node of the Efficiency section adds up to len(children)
# terms, each rounding at most U times the sum of their sizes. PyTorch rounds the same
# quantities, but a sum of at most F terms, regrouped, can err by up to F times as much as one
# rounding of its terms; F is the longest sum of the network (a row of mlp_fc2 has 4 * n_embd
# terms, softmax vocab_size, attention block_size). So the two losses differ by at most
# (2 + F) times microgpt's bound: 1e-12 or so here. A real mistake (rmsnorm's 1e-5 as 1e-6, a
# missing scale) moves the loss by more than 1e-5.
#
# The gradients. Each is a sum, over the paths from the loss to the parameter, of products of
# local derivatives: along a path of at most D nodes (the graph's depth, computed), each product
# and each sum of at most F terms rounds, by at most U of numbers no larger than the largest
# gradient (the activations are normalised, the probabilities at most 1). So both programs'
# gradients are within 2 U D F of the largest gradient: ~1e-12 of it. A real mistake misses by
# more than 1e-6 of it.

def longest_sum(vocab_size):
    """F: the most terms any sum of the network adds up, forward or backward."""
    return max(4 * microgpt.n_embd, microgpt.block_size, vocab_size)


def rounding_bound_and_depth(loss):
    """After loss.backward(): how far rounding can have moved loss.data (to first order), and
    the depth of the graph (the most nodes on a path from the loss to a leaf)."""
    order, seen, stack = [], {id(loss)}, [(loss, iter(loss._children))]
    while stack:  # children before parents, without recursion
        v, children = stack[-1]
        for child in children:
            if id(child) not in seen:
                seen.add(id(child))
                stack.append((child, iter(child._children)))
                break
        else:
            stack.pop()
            order.append(v)
    bound, depth = 0.0, {}
    for v in order:
        depth[id(v)] = 1 + max((depth[id(c)] for c in v._children), default=0)
        if len(v._children) > 2:  # a fused node: a sum of terms or of products, from 0
            size = sum(abs(g * c.data) for c, g in zip(v._children, v._local_grads))
            bound += U * len(v._children) * size * abs(v.grad)
        elif v._children:  # one operation (a leaf is an input: nothing to round)
            bound += 2 * U * abs(v.data * v.grad)
    return bound, depth[id(loss)]


# The PyTorch model, written from the architecture --------------------------------------------

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
    n_embd, n_head = microgpt.n_embd, microgpt.n_head
    head_dim = n_embd // n_head
    n = min(microgpt.block_size, len(tokens) - 1)
    inputs, targets = torch.tensor(tokens[:n]), torch.tensor(tokens[1:n + 1])
    future = torch.ones(n, n, dtype=torch.bool).triu(diagonal=1)  # row t may not see t' > t

    def heads(y):  # [n, n_embd] -> [n_head, n, head_dim]: head h has dims h*hd .. (h+1)*hd - 1
        return y.view(n, n_head, head_dim).transpose(0, 1)

    x = rmsnorm(w["wte"][inputs] + w["wpe"][:n])  # [n, n_embd]
    for i in range(microgpt.n_layer):
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


# Comparing ------------------------------------------------------------------------------------

def worst_difference(ours, theirs, tolerance):
    """The largest |difference| / tolerance over two dicts of matrices, microgpt's (lists of rows
    of floats) and PyTorch's (tensors), entry by entry (tolerance: a number, or a tensor per
    matrix), and a message that names the worst entry and shows both numbers."""
    worst, message = -1.0, ""
    for name, matrix in ours.items():
        limit = tolerance[name] if isinstance(tolerance, dict) else tolerance
        diff = (torch.tensor(matrix, dtype=F64) - theirs[name]).abs()
        ratio = diff / limit
        row, col = divmod(ratio.argmax().item(), diff.shape[1])
        if ratio[row, col].item() > worst:
            worst = ratio[row, col].item()
            allowed = limit[row, col].item() if torch.is_tensor(limit) else limit
            message = (f"{name}[{row}][{col}]: microgpt {matrix[row][col]!r}, PyTorch "
                       f"{theirs[name][row, col].item()!r}, |difference| "
                       f"{diff[row, col].item():.3g}, allowed {allowed:.3g}")
    return worst, message


def gradient_tolerance(depth, longest, largest_gradient):
    return 2 * U * depth * longest * largest_gradient


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_pytorch_gives_the_same_loss_and_every_gradient(shape, uchars, efficient):
    configure(**shape)
    assert len(LONG_DOC) + 1 > microgpt.block_size, "no document is cut to block_size"
    _, state_dict, params = new_model(uchars, seed=microgpt.seed)
    weights = as_tensors(state_dict)
    longest = longest_sum(len(uchars) + 1)
    for doc in DOCS:
        tokens = encode(doc, uchars)
        loss = doc_loss(tokens, state_dict)
        loss.backward()
        bound, depth = rounding_bound_and_depth(loss)
        grads = {name: [[p.grad for p in row] for row in matrix]
                 for name, matrix in state_dict.items()}
        for p in params:
            p.grad = 0

        for t in weights.values():
            t.grad = None
        expected = torch_loss(weights, tokens)
        expected.backward()

        loss_tolerance = (2 + longest) * bound
        assert abs(loss.data - expected.item()) <= loss_tolerance, (
            f"{doc!r}: loss {loss.data!r}, PyTorch {expected.item()!r}, |difference| "
            f"{abs(loss.data - expected.item()):.3g}, allowed {loss_tolerance:.3g}")
        expected_grads = {name: t.grad for name, t in weights.items()}
        largest = max(g.abs().max().item() for g in expected_grads.values())
        worst, where = worst_difference(grads, expected_grads,
                                        gradient_tolerance(depth, longest, largest))
        assert worst <= 1, f"{doc!r}: a gradient differs by more than its tolerance: {where}"


# Twenty steps of train() against Adam in PyTorch. Adam as its paper (Kingma and Ba, Algorithm
# 1) writes it: m and v, running means of the gradient and of its square, corrected for their
# start at 0, and a step of lr_t * m_hat / (sqrt(v_hat) + eps).
#
# The losses: each step's loss within (2 + F) times the rounding bound of that step's graph, as
# above (microgpt's graphs are recorded as train() runs backward on them).
#
# The parameters: a gradient off by at most delta (its tolerance above) moves m_hat and
# sqrt(v_hat) by at most delta (each is a weighted mean, or the root of a weighted mean square,
# of the gradients so far, with weights that add up to 1). So a step moves by at most
# lr_t * delta / (sqrt(v_hat) + eps) * (1 + |m_hat| / (sqrt(v_hat) + eps)) more or less, for
# each parameter, from PyTorch's own m_hat and v_hat; added up over the steps. Twice that, for
# the gradients' own change where the parameters already differ, and Adam's own arithmetic: a
# few roundings of each parameter per step. A wrong beta, bias correction or learning-rate
# schedule moves the parameters by far more.

def torch_adam(weights, docs, uchars, depths):
    """NUM_STEPS steps of Adam in PyTorch, on docs in turn, as train() takes them: the losses,
    and how far each parameter may be from microgpt's (a tensor per matrix)."""
    tensors = list(weights.values())
    m = [torch.zeros_like(t) for t in tensors]
    v = [torch.zeros_like(t) for t in tensors]
    slack = [torch.zeros_like(t) for t in tensors]
    beta1, beta2, eps = microgpt.beta1, microgpt.beta2, microgpt.eps_adam
    losses = []
    for step in range(NUM_STEPS):
        for t in tensors:
            t.grad = None
        loss = torch_loss(weights, encode(docs[step % len(docs)], uchars))
        loss.backward()
        losses.append(loss.item())
        lr = microgpt.learning_rate * (1 - step / NUM_STEPS)
        largest = max(t.grad.abs().max().item() for t in tensors)
        delta = gradient_tolerance(depths[step], longest_sum(len(uchars) + 1), largest)
        with torch.no_grad():
            for t, m_i, v_i, s_i in zip(tensors, m, v, slack):
                m_i.mul_(beta1).add_((1 - beta1) * t.grad)
                v_i.mul_(beta2).add_((1 - beta2) * t.grad * t.grad)
                m_hat = m_i / (1 - beta1 ** (step + 1))
                v_hat = v_i / (1 - beta2 ** (step + 1))
                t.sub_(lr * m_hat / (v_hat.sqrt() + eps))
                denominator = v_hat.sqrt() + eps
                s_i.add_(lr * delta / denominator * (1 + m_hat.abs() / denominator)
                         + 8 * U * t.abs())
    return losses, {name: 2 * s for name, s in zip(weights, slack)}


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_twenty_adam_steps_of_train_match_pytorch(shape, uchars, efficient, monkeypatch):
    configure(**shape, num_steps=NUM_STEPS)
    _, state_dict, params = new_model(uchars, seed=microgpt.seed)
    weights = as_tensors(state_dict)

    graphs = []  # each step's (rounding bound, depth), as train() runs backward
    backward = vars(Value)["backward"]

    def recording_backward(loss):
        backward(loss)
        graphs.append(rounding_bound_and_depth(loss))

    monkeypatch.setattr(Value, "backward", recording_backward)
    losses = quietly(microgpt.train, DOCS, uchars, len(uchars), state_dict, params)
    monkeypatch.undo()
    assert len(losses) == NUM_STEPS, f"train() gave {len(losses)} losses for {NUM_STEPS} steps"

    expected_losses, param_tolerance = torch_adam(weights, DOCS, uchars,
                                                  [depth for _, depth in graphs])
    for step, (ours, theirs, (bound, _)) in enumerate(zip(losses, expected_losses, graphs)):
        tolerance = (2 + longest_sum(len(uchars) + 1)) * bound
        assert abs(ours - theirs) <= tolerance, (
            f"step {step + 1}: loss {ours!r}, PyTorch {theirs!r}, |difference| "
            f"{abs(ours - theirs):.3g}, allowed {tolerance:.3g}")
    trained = {name: [[p.data for p in row] for row in matrix]
               for name, matrix in state_dict.items()}
    worst, where = worst_difference(trained, {k: t.detach() for k, t in weights.items()},
                                    param_tolerance)
    assert worst <= 1, f"after {NUM_STEPS} Adam steps, a parameter differs too much: {where}"
