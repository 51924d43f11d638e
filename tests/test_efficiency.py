"""The Efficiency section makes the same program faster without changing a bit.

Each device gives exactly the numbers of the plain code it stands in for: fused_dot for dot()
(and after training, dot_without_graph), fused_softmax (its total a fused_sum) for softmax(),
Value's __add__ and __mul__ that make no node for a plain number, and the topological sort
without recursion. Together they give the
whole model's loss and every gradient bit for bit. efficiency() swaps them in and puts
everything back, and with them (CPython's cycle collector off) or without them (the plain code,
collector on), memory does not grow with the number of steps."""
import gc
import random
import sys

import pytest

import microgpt
from helpers import INPUT, configure, doc_loss, encode, new_model, quietly
from microgpt import Value

CPYTHON = sys.implementation.name == "cpython"
try:
    import tracemalloc
except ImportError:  # PyPy has none
    tracemalloc = None


def mixed_magnitudes(rng, n):
    """Numbers from 1e-4 to 1e4 of both signs: their products and sums round at almost every
    step, so a different order of operations shows in the last bits."""
    return [rng.uniform(-1, 1) * 10.0 ** rng.randint(-4, 4) for _ in range(n)]


def value_and_grads(build, data):
    """build(fresh leaves for data) -> a Value, then backward as written: its value, and the
    gradient of each leaf."""
    leaves = [Value(x) for x in data]
    out = build(leaves)
    out.backward()
    return out.data, [leaf.grad for leaf in leaves]


def assert_same_bits(label, plain, fast):
    (plain_value, plain_grads), (fast_value, fast_grads) = plain, fast
    assert fast_value == plain_value, (
        f"{label}: value {fast_value!r} with the device, {plain_value!r} without")
    differ = [(i, p, f) for i, (p, f) in enumerate(zip(plain_grads, fast_grads)) if p != f]
    assert not differ, (f"{label}: {len(differ)} gradients differ; first (input, plain, "
                        f"device): {differ[:3]}")


def in_context(device):
    """A graph with the device inside, as the model has it: its inputs are computed nodes that
    other nodes use too (each leaf is in two products), and what it gives goes on into more
    arithmetic, so that its gradients meet others in backward's +=."""
    def build(leaves):
        n = len(leaves)
        u = [leaves[i] * leaves[(i + 1) % n] for i in range(n)]
        out = device(u)
        outs = out if isinstance(out, list) else [out]
        return sum(o * w for o, w in zip(outs, reversed(u)))
    return build


def halves(u):
    return u[:len(u) // 2], u[len(u) // 2:]


# Each device beside the plain code it stands in for, on vectors as the model passes them: two
# different vectors, or one vector with itself (rmsnorm's dot(x, x)). (Not a Value at two
# different places of one dot or sum, which the model never passes: the fused node would hand
# it its shares first to last, the plain chain of nodes last to first, and a sum of three or
# more shares can round differently in the other order.)
DEVICES = [
    ("fused_dot", lambda u: microgpt.dot(*halves(u)), lambda u: microgpt.fused_dot(*halves(u))),
    ("fused_dot of a vector with itself", lambda u: microgpt.dot(u, u),
     lambda u: microgpt.fused_dot(u, u)),
    ("fused_sum", sum, microgpt.fused_sum),
    ("fused_softmax", microgpt.softmax, microgpt.fused_softmax),
]


@pytest.mark.parametrize("label, plain, device", DEVICES, ids=[d[0] for d in DEVICES])
def test_each_fused_node_gives_the_plain_codes_value_and_every_gradient_bit_for_bit(
        label, plain, device):
    rng = random.Random(0)
    for trial in range(100):
        data = mixed_magnitudes(rng, 12)
        if device is microgpt.fused_softmax:  # products of numbers within 3: exp cannot overflow
            data = [rng.uniform(-3, 3) for _ in range(12)]
        assert_same_bits(f"{label}, trial {trial}, inputs {data}",
                         value_and_grads(in_context(plain), data),
                         value_and_grads(in_context(device), data))


def test_dot_without_a_graph_gives_dots_value_bit_for_bit_as_a_node_without_children():
    # After training nothing calls backward(): sampling and the reports use it in dot()'s place
    rng = random.Random(1)
    for trial in range(100):
        a = [Value(x) for x in mixed_magnitudes(rng, 16)]
        b = [Value(x) for x in mixed_magnitudes(rng, 16)]
        for x, y in ((a, b), (a, a)):
            plain, fast = microgpt.dot(x, y), microgpt.dot_without_graph(x, y)
            assert fast.data == plain.data, (
                f"trial {trial}: {fast.data!r} without a graph, {plain.data!r} with dot()")
            assert fast._children == (), f"trial {trial}: a node with children"


def with_plain_numbers(a, b, c):
    """Every way a plain number meets a Value: on either side of +, -, * and /, as an int and as
    a float, and sum()'s first 0; with Values that meet Values too."""
    return ((2 * a + a * 0.5 - 1 - (3 - b) / 4 + 2 / c + sum([a, b, c]) + (-c) * 3.0)
            * (a + 1.5) + (0.25 + b) * (c - 2.5) / (7 - a * b))


def test_add_and_mul_without_constant_nodes_give_the_same_bits(monkeypatch):
    rng = random.Random(1)
    plain = []
    datas = [mixed_magnitudes(rng, 3) for _ in range(300)]
    for data in datas:
        plain.append(value_and_grads(lambda xs: with_plain_numbers(*xs), data))
    monkeypatch.setattr(Value, "__add__", microgpt.add_constant_free)
    monkeypatch.setattr(Value, "__mul__", microgpt.mul_constant_free)
    assert len((Value(1.0) + 2)._children) == 1, "a plain number still makes a node"
    for trial, (data, expected) in enumerate(zip(datas, plain)):
        fast = value_and_grads(lambda xs: with_plain_numbers(*xs), data)
        assert_same_bits(f"trial {trial}, inputs {data}", expected, fast)


# The sort without recursion

class EdgeRecorder:
    """A local derivative of 1 that logs its edge when backward uses it: `child.grad +=
    local_grad * v.grad` multiplies it exactly once per edge, in the order backward runs."""

    def __init__(self, log, label):
        self.log, self.label = log, label

    def __mul__(self, grad):
        self.log.append(self.label)
        return grad


def random_graph(rng, log):
    """A random graph of 1 to 4 leaves and 5 to 60 nodes, children repeated and shared."""
    nodes = [Value(float(i)) for i in range(rng.randint(1, 4))]
    for k in range(rng.randint(5, 60)):
        children = tuple(rng.choice(nodes) for _ in range(rng.randint(1, 3)))
        grads = tuple(EdgeRecorder(log, f"n{k}.{i}") for i in range(len(children)))
        nodes.append(Value(0.0, children, grads))
    return nodes[-1]


def test_the_sort_without_recursion_hands_on_gradients_in_build_topos_order():
    # The same edges in the same order: the same additions into every grad, in the same order,
    # and so the same last bits
    for trial in range(300):
        plain_log, fast_log = [], []
        Value.backward(random_graph(random.Random(trial), plain_log))
        microgpt.backward_without_recursion(random_graph(random.Random(trial), fast_log))
        first = next((i for i, (p, f) in enumerate(zip(plain_log, fast_log)) if p != f),
                     min(len(plain_log), len(fast_log)))
        assert fast_log == plain_log, (
            f"trial {trial}: the edge order differs from build_topo's at edge {first}: "
            f"expected {plain_log[first:first + 5]}, got {fast_log[first:first + 5]}")


def test_the_sort_without_recursion_goes_deeper_than_the_recursion_limit():
    depth, c = 50 * sys.getrecursionlimit(), 1.00001
    x = Value(1.0)
    y = x
    with microgpt.efficiency():
        for _ in range(depth):
            y = y * c
        y.backward()
    # The forward computes ((1.0 * c) * c) * ..., backward ((1 * c) * c) * ...: the same
    # products in the same order, so the gradient equals the value, bit for bit
    assert x.grad == y.data, (
        f"{depth} multiplications by {c}: gradient expected {y.data!r}, got {x.grad!r}")
    with pytest.raises(RecursionError):  # (as deep as that, the recursive build_topo fails)
        Value.backward(y)


# The whole model: the same loss and every gradient, bit for bit

TWO_LAYERS = dict(n_layer=2, n_embd=8, n_head=2, block_size=8)
SHAPES = [{}, TWO_LAYERS]
SHAPE_IDS = ["default shape", "2 layers, n_embd 8, n_head 2, block_size 8"]
DOCS = ["emma", "muhammadibrahim"]  # names of input.txt; the second longer than block_size


@pytest.fixture(scope="module")
def names():
    with open(INPUT, encoding="utf-8") as f:
        return f.read().split()


def loss_and_grads(tokens, state_dict):
    """The loss of a document and every parameter's gradient (then set back to 0)."""
    loss = doc_loss(tokens, state_dict)
    loss.backward()
    grads = {}
    for name, mat in state_dict.items():
        grads[name] = [[p.grad for p in row] for row in mat]
        for row in mat:
            for p in row:
                p.grad = 0
    return loss.data, grads


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_the_whole_model_gives_the_same_loss_and_every_gradient_bit_for_bit(shape, names):
    # Exact equality on purpose: the claim is "the same operations in the same order"
    uchars, state_dict, _ = new_model(names, **shape)
    differences = []
    for doc in DOCS:
        tokens = encode(doc, uchars)
        plain_loss, plain_grads = loss_and_grads(tokens, state_dict)
        with microgpt.efficiency() as fast:
            assert fast, "the Efficiency section did not go in"
            fast_loss, fast_grads = loss_and_grads(tokens, state_dict)
        if fast_loss != plain_loss:
            differences.append((doc, "loss", plain_loss, fast_loss))
        differences += [(doc, f"{name}[{i}][{j}].grad", p, fast_grads[name][i][j])
                        for name, mat in plain_grads.items()
                        for i, row in enumerate(mat) for j, p in enumerate(row)
                        if p != fast_grads[name][i][j]]
    shown = "\n".join(f"  {doc!r} {what}: plain {p!r}, efficient {f!r}"
                      for doc, what, p, f in differences[:10])
    assert not differences, f"{len(differences)} numbers differ:\n{shown}"


# efficiency() itself

def current_code():
    """microgpt's functions and Value's methods, as they are now."""
    functions = {name: f for name, f in vars(microgpt).items() if callable(f)}
    methods = {name: f for name, f in vars(Value).items() if callable(f)}
    return functions, methods


def nodes(v):
    """The Values of v's graph: v, and every Value it was computed from."""
    seen, stack = set(), [v]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(node._children)
    return seen


def runs_fast():
    """What code run inside efficiency() can see: a plain number makes no node, dot() of two
    terms makes one node instead of four, and a graph deeper than the recursion limit has
    gradients."""
    a, b = Value(1.0), Value(2.0)
    deep = a
    for _ in range(2 * sys.getrecursionlimit()):
        deep = deep + b
    try:
        deep.backward()
        deep_ok = True
    except RecursionError:
        deep_ok = False
    return {"Values in a + 2": len(nodes(a + 2)),
            "Values in dot([a, b], [b, a])": len(nodes(microgpt.dot([a, b], [b, a]))),
            "backward of a deep graph": deep_ok}


# a + 2: a and the sum (plain: and the constant 2); the dot: a, b and one node (plain: two
# products, the constant 0 that sum() starts from, and two sums)
FAST = {"Values in a + 2": 2, "Values in dot([a, b], [b, a])": 3, "backward of a deep graph": True}


@pytest.mark.parametrize("collector", [True, False], ids=["collector on", "collector off"])
def test_efficiency_puts_everything_back_even_after_a_failure(collector):
    if not collector:
        gc.disable()  # (conftest puts the collector back on after the test)
    before, plain_behaviour = current_code(), runs_fast()
    assert plain_behaviour != FAST, f"the plain code behaves as the fast one: {FAST}"
    with pytest.raises(ZeroDivisionError):
        with microgpt.efficiency() as fast:
            assert fast is True
            inside = runs_fast()
            collector_inside = gc.isenabled()
            1 / 0
    assert inside == FAST, f"inside efficiency(): {inside}"
    # The fast graph has no cycle, and CPython frees it without the collector; PyPy needs its
    # collector for everything
    assert collector_inside == (collector and not CPYTHON), (
        f"the collector was {'on' if collector_inside else 'off'} inside efficiency()")
    assert current_code() == before, "efficiency() left a function or method replaced"
    assert runs_fast() == plain_behaviour
    assert gc.isenabled() == collector, (
        f"the collector was {'on' if collector else 'off'} before, "
        f"{'on' if gc.isenabled() else 'off'} after")


def test_efficiency_plain_changes_nothing_and_gives_false():
    before, plain_behaviour = current_code(), runs_fast()
    with microgpt.efficiency(True) as fast:
        assert fast is False
        assert current_code() == before, "efficiency(True) replaced a function or method"
        assert runs_fast() == plain_behaviour
        assert gc.isenabled(), "efficiency(True) turned the collector off"
    assert current_code() == before
    assert gc.isenabled()


# Memory: a step's graph is freed, with the Efficiency section (and CPython's collector off) and
# without it (the plain code, whose recursive build_topo makes a reference cycle, so that only
# the collector frees its graph). Peaks measured by tracemalloc, in this process, while train()
# runs a small model: N steps, and 3N. A graph is all but all of a step's memory: had each been
# kept, the 3N-step peak would hold 3 times as many graphs as the N-step one, a ratio near 3.
# Freed, both peaks hold the same one or two graphs (the largest document's, N being the number
# of documents so that both runs train on each; and, plain, the one before it, if the collector
# has not run yet): a ratio near 1. 1.5 is well clear of both.
SMALL = dict(n_layer=1, n_embd=4, n_head=1, block_size=8)
MEMORY_DOCS = ["emma", "ava", "mia"]
MEMORY_RATIO = 1.5


def peak_of_training(steps, plain):
    """The peak of memory allocated while train() runs `steps` steps of a fresh small model,
    with the Efficiency section or plain, in bytes."""
    uchars, state_dict, params = new_model(MEMORY_DOCS, **SMALL)
    configure(num_steps=steps)
    already_tracing = tracemalloc.is_tracing()
    if not already_tracing:
        tracemalloc.start()
    try:
        with microgpt.efficiency(plain):
            tracemalloc.reset_peak()
            start, _ = tracemalloc.get_traced_memory()
            quietly(microgpt.train, MEMORY_DOCS, uchars, len(uchars), state_dict, params)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        if not already_tracing:
            tracemalloc.stop()
    return peak - start


@pytest.mark.skipif(tracemalloc is None, reason="no tracemalloc (a CPython module) to "
                    "measure the peaks with")
@pytest.mark.parametrize("plain", [False, True], ids=["efficient, collector off", "plain"])
def test_memory_does_not_grow_with_the_number_of_steps(plain):
    n = len(MEMORY_DOCS)
    peak_n, peak_3n = peak_of_training(n, plain), peak_of_training(3 * n, plain)
    assert peak_3n <= MEMORY_RATIO * peak_n, (
        f"{n} steps peaked at {peak_n / 1000:.0f} kB, {3 * n} steps at {peak_3n / 1000:.0f} kB: "
        f"{peak_3n / peak_n:.2f} times as much (at most {MEMORY_RATIO})")
