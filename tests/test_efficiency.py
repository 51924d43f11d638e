"""The Efficiency section makes the same program faster without changing a bit.

Each device gives exactly the numbers of the plain code it stands in for: the fused nodes
(fused_dot, fused_sum, and linear, softmax and rmsnorm built on them), Value's methods that make
no node for a constant and call exp once, and the topological sort without recursion. Together
they give the whole model's loss and every gradient bit for bit (the run's trained parameters are
checked against the reference's hash in tests/test_output.py, with and without --plain).
efficiency() puts everything back after a run. Without the collector, the fast graph is still
freed; the plain build_topo makes a reference cycle, which is why --plain keeps the collector on,
and the peak memory of 100 steps shows both."""
import gc
import random
import sys

import pytest

import microgpt
from conftest import INPUT, doc_loss, encode, new_model, run_main, slow_run, write
from microgpt import Value


def mixed_magnitudes(rng, n):
    """Numbers from 1e-8 to 1e8 of both signs: a sum of them rounds at almost every step."""
    return [rng.uniform(-1, 1) * 10.0 ** rng.randint(-8, 8) for _ in range(n)]


def values_and_grads(build, data):
    """build(list of fresh Values) -> a Value: its value, and each input's gradient after
    backward, as computed with the Value class as written."""
    xs = [Value(x) for x in data]
    out = build(xs)
    out.backward()
    return out.data, [x.grad for x in xs]


def assert_same_bits(label, plain, fast):
    (plain_value, plain_grads), (fast_value, fast_grads) = plain, fast
    assert fast_value == plain_value, (
        f"{label}: value {fast_value!r} with the device, {plain_value!r} without")
    differ = [(i, p, f) for i, (p, f) in enumerate(zip(plain_grads, fast_grads)) if p != f]
    assert not differ, (f"{label}: {len(differ)} gradients differ; first (input, plain, fused): "
                        f"{differ[:3]}")


def split(xs):
    half = len(xs) // 2
    return xs[:half], xs[half:]


# Each fused function against the plain one it stands in for, on numbers that round a lot, with
# inputs shared between factors as the model shares them
DEVICES = [
    ("fused_dot", lambda xs: microgpt.dot(*split(xs)),
     lambda xs: microgpt.fused_dot(*split(xs))),
    ("fused_dot of x with itself", lambda xs: microgpt.dot(xs, xs),
     lambda xs: microgpt.fused_dot(xs, xs)),
    ("fused_sum", lambda xs: sum(x * x for x in xs), lambda xs: microgpt.fused_sum(
        [x * x for x in xs])),
    ("fused_linear", lambda xs: sum(microgpt.linear(xs[:4], [xs[4:8], xs[8:12], xs[:4]])),
     lambda xs: sum(microgpt.fused_linear(xs[:4], [xs[4:8], xs[8:12], xs[:4]]))),
    ("fused_rmsnorm", lambda xs: sum(y * x for y, x in zip(microgpt.rmsnorm(xs), xs)),
     lambda xs: sum(y * x for y, x in zip(microgpt.fused_rmsnorm(xs), xs))),
    ("fused_softmax", lambda xs: sum(p * x for p, x in zip(microgpt.softmax(xs), xs)),
     lambda xs: sum(p * x for p, x in zip(microgpt.fused_softmax(xs), xs))),
]


@pytest.mark.parametrize("label, plain, fused", DEVICES, ids=[d[0] for d in DEVICES])
def test_each_fused_node_gives_the_plain_codes_value_and_gradients_bit_for_bit(
        label, plain, fused):
    rng = random.Random(0)
    for trial in range(100):
        data = mixed_magnitudes(rng, 12)
        if "softmax" in label or "rmsnorm" in label:
            data = [rng.uniform(-3, 3) for _ in range(12)]  # exp must not overflow
        assert_same_bits(f"{label}, trial {trial}", values_and_grads(plain, data),
                         values_and_grads(fused, data))


def composite(a, b, c):
    """Every operator, with constants on both sides: a graph of the Value class's every method."""
    return ((a * b).exp() + 2 * a - 1) ** 0.5 / (3 + b.relu()) - (c * c + 1).log() * (
        1 - c) / 4 + (-a) * 0.5 + c.exp() - b / c


def test_value_methods_without_constant_nodes_give_the_same_bits():
    rng = random.Random(1)
    for trial in range(200):
        data = [rng.uniform(0.1, 2), rng.uniform(-2, 2), rng.uniform(0.5, 2)]
        plain = values_and_grads(lambda xs: composite(*xs), data)
        with microgpt.efficiency():
            fast = values_and_grads(lambda xs: composite(*xs), data)
        assert_same_bits(f"trial {trial}, inputs {data}", plain, fast)


class EdgeRecorder:
    """A local derivative of 1 that logs its edge when backward uses it."""

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


def test_the_sort_without_recursion_hands_on_grads_in_build_topos_order():
    # Same edges in the same order means the same additions into every grad, in the same order
    for trial in range(200):
        plain_log, fast_log = [], []
        Value.backward(random_graph(random.Random(trial), plain_log))
        microgpt.backward_without_recursion(random_graph(random.Random(trial), fast_log))
        first = next((i for i, (p, f) in enumerate(zip(plain_log, fast_log)) if p != f),
                     min(len(plain_log), len(fast_log)))
        assert fast_log == plain_log, (
            f"trial {trial}: edge order differs from build_topo's at edge {first}: "
            f"expected {plain_log[first:first + 5]}, got {fast_log[first:first + 5]}")


def test_the_sort_without_recursion_goes_deeper_than_the_recursion_limit():
    depth, c = 100_000, 1.00001
    assert depth > sys.getrecursionlimit()
    x = Value(1.0)
    y = x
    with microgpt.efficiency():
        for _ in range(depth):
            y = y * c
        y.backward()
    # The forward computes ((1.0 * c) * c) * ..., backward ((1 * c) * c) * ...: the same
    # products in the same order, so the gradient equals the value bit for bit (about e).
    assert x.grad == y.data, (
        f"{depth} multiplications by {c}: gradient expected {y.data!r}, got {x.grad!r}")
    with pytest.raises(RecursionError):  # build_topo's recursion: see tests/test_errors.py
        Value.backward(y)


# The whole model: plain and efficient give the same loss and every gradient, bit for bit

TWO_LAYERS = dict(n_layer=2, n_embd=8, n_head=2, block_size=8)
SHAPES = [{}, TWO_LAYERS]
SHAPE_IDS = ["default shape", "2 layers, n_embd 8, n_head 2, block_size 8"]
DOCS = ["emma", "zoe", "muhammadibrahim"]  # short names, and one longer than block_size 8


@pytest.fixture(scope="module")
def names():
    with open(INPUT, encoding="utf-8") as f:
        return f.read().split()


def take_grads(state_dict):
    """Every parameter's gradient, by matrix, row and column; then zero them."""
    grads = {}
    for name, mat in state_dict.items():
        grads[name] = [[p.grad for p in row] for row in mat]
        for row in mat:
            for p in row:
                p.grad = 0
    return grads


def compare_modes(docs, shape, names):
    """Loss and gradients of each doc, plain and efficient: the (doc, what, fast, plain) that
    differ."""
    uchars, state_dict, _ = new_model(names, **shape)
    differences = []
    for doc in docs:
        tokens = encode(doc, uchars)
        gc.disable()  # (it changes no number; the plain graph's cycle is freed below)
        try:
            plain = doc_loss(tokens, state_dict)
            plain.backward()
        finally:
            gc.enable()
        plain_grads = take_grads(state_dict)
        with microgpt.efficiency():
            fast = doc_loss(tokens, state_dict)
            fast.backward()
        fast_grads = take_grads(state_dict)
        if fast.data != plain.data:
            differences.append((doc, "loss", fast.data, plain.data))
        differences += [(doc, f"{name}[{i}][{j}].grad", g, plain_grads[name][i][j])
                        for name, mat in fast_grads.items()
                        for i, row in enumerate(mat) for j, g in enumerate(row)
                        if g != plain_grads[name][i][j]]
    return differences


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_the_whole_model_gives_the_same_loss_and_every_gradient_bit_for_bit(shape, names):
    # Exact equality on purpose: the claim is "same operations, same order", not "close".
    differences = compare_modes(DOCS, shape, names)
    shown = "\n".join(f"  {doc!r} {what}: plain {p!r}, efficient {f!r}"
                      for doc, what, f, p in differences[:10])
    assert not differences, f"{len(differences)} numbers differ:\n{shown}"


def test_the_bit_for_bit_check_catches_a_regrouped_softmax(names, monkeypatch):
    # Guard on the test above: a separate total per probability computes the same values but
    # adds the gradient contributions in another order, which 4 printed decimals do not show.
    def softmax_one_total_per_probability(logits):
        m = max(v.data for v in logits)
        exps = [(v - m).exp() for v in logits]
        return [e / microgpt.fused_sum(exps) for e in exps]
    monkeypatch.setitem(microgpt.FAST_FUNCTIONS, "softmax", softmax_one_total_per_probability)
    assert compare_modes(DOCS[:1], TWO_LAYERS, names), (
        "a softmax with a separate total per probability went unnoticed")


# efficiency() itself

def test_efficiency_puts_everything_back_even_after_an_error():
    functions = {name: getattr(microgpt, name) for name in microgpt.FAST_FUNCTIONS}
    methods = {name: vars(Value)[name] for name in microgpt.FAST_METHODS}
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError):
        with microgpt.efficiency():
            assert microgpt.linear is microgpt.fused_linear
            assert vars(Value)["backward"] is microgpt.backward_without_recursion
            assert gc.isenabled() == (sys.implementation.name != "cpython")
            1 / 0
    assert {name: getattr(microgpt, name) for name in functions} == functions
    assert {name: vars(Value)[name] for name in methods} == methods
    assert gc.isenabled(), "the cycle collector was left off"


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's reference counting")
@pytest.mark.parametrize("efficient", [True, False], ids=["efficient", "plain"])
def test_only_the_plain_sort_leaves_a_cycle_for_the_collector(efficient, names):
    # With the collector off, CPython frees what reference counting can: all of it when there is
    # no cycle. A step's graph that is freed that way leaves the collector nothing to find.
    uchars, state_dict, _ = new_model(names)
    gc.collect()
    with microgpt.efficiency(enabled=efficient):
        collector = gc.isenabled()
        gc.disable()
        try:
            loss = doc_loss(encode("emma", uchars), state_dict)
            loss.backward()
            del loss
            found = gc.collect()
        finally:
            if collector:
                gc.enable()
    if efficient:
        assert found == 0, f"the collector found {found} objects in cycles after a fast step"
    else:
        assert found > 10_000, (
            f"the plain build_topo's cycle held only {found} objects: expected the whole graph")


# Peak memory of 100 steps, as real runs: a graph that is never freed would add megabytes a step
# (the post's program, with the collector off, passes 1.5 GB within 100 steps). The fast run
# trains the default model; --plain, 17 times slower, a narrow one (all 100 of its graphs kept,
# had the collector been off: 216 MB).
MEMORY_RUNS = {"efficient": ["--num-steps", "100", "--num-samples", "0"],
               "plain": ["--plain", "--n-embd", "4", "--n-head", "1", "--block-size", "8",
                         "--num-steps", "100", "--num-samples", "0"]}
MEMORY_LIMIT_KB = 40_000  # measured 25 MB (efficient) and 22 MB (plain), CPython 3.11
for _mode, _args in MEMORY_RUNS.items():
    slow_run(f"memory {_mode}", "test_peak_memory_of_100_steps", sys.executable, _args)


@pytest.mark.skipif(sys.implementation.name != "cpython",
                    reason="about CPython's reference counting and cycle collector")
@pytest.mark.parametrize("mode", MEMORY_RUNS)
def test_peak_memory_of_100_steps(mode, background):
    out, err, code, peak_kb, _ = background.result(f"memory {mode}", sys.executable,
                                                    MEMORY_RUNS[mode])
    assert code == 0, err
    if peak_kb == 0:
        pytest.skip("no /proc/self/status here to read the peak from")
    assert peak_kb < MEMORY_LIMIT_KB, (
        f"{mode}: 100 steps peaked at {peak_kb / 1000:.1f} MB, over {MEMORY_LIMIT_KB / 1000} MB")


def test_the_run_uses_the_efficiency_section_unless_plain(monkeypatch, capsys, tmp_path):
    plain_linear, plain_add = microgpt.linear, vars(Value)["__add__"]
    seen, real_train = [], microgpt.train

    def recording_train(*args):
        seen.append((microgpt.linear, vars(Value)["__add__"], gc.isenabled()))
        return real_train(*args)

    monkeypatch.setattr(microgpt, "train", recording_train)
    names = write(tmp_path / "names.txt", "emma\nava\n")
    for flags in ([], ["--plain"]):
        code, _, err = run_main(capsys, ["--input", str(names), "--num-steps", "1",
                                         "--num-samples", "0", *flags])
        assert code == 0, err
    (fast_linear, fast_add, fast_collector), plain = seen
    assert fast_linear is microgpt.fused_linear and fast_add is microgpt.add_constant_free
    assert fast_collector == (sys.implementation.name != "cpython")
    assert plain == (plain_linear, plain_add, True), plain
    assert (microgpt.linear, vars(Value)["__add__"]) == (plain_linear, plain_add)
