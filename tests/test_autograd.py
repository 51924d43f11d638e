"""Claims about the autograd engine (microgpt.py's Autograd section): each operation's value and
derivative, and how backward() orders and accumulates the chain rule. Each claim holds for the
Value class as written and with the Efficiency section in place (which tests/test_efficiency.py
shows changes no bit)."""
import contextlib
import math

import pytest

import microgpt
from helpers import U, rounding_bound
from microgpt import Value

MODES = ["plain", "efficient"]


@contextlib.contextmanager
def in_mode(mode):
    """The Value class as written ("plain"), or with the Efficiency section in place, as a run
    has it ("efficient")."""
    with microgpt.efficiency(plain=mode == "plain") as fast:
        assert fast == (mode == "efficient"), "the Efficiency section did not go in"
        yield


@pytest.fixture(params=MODES)
def mode(request):
    with in_mode(request.param):
        yield request.param


def left_to_right(terms):
    """((0 + t0) + t1) + ..., as sum() adds Values. (Python 3.12's sum() of floats rounds less
    often, so it is not the arithmetic of microgpt's sum of Values.)"""
    total = 0
    for t in terms:
        total += t
    return total


# The operations, each as a function of Values and as the same function of plain floats, in the
# order of operations the program's contract fixes (SPEC.md section 3: a - b is a + (-b), a / b
# is a * b ** -1), so that the values must be equal to the last bit. Then each derivative in
# plain math (None where a formula would be the test rewriting the chain rule), and the points.
PAIRS = [(1.5, -0.7), (-2.0, 0.3), (0.4, 2.5), (-0.9, -1.6)]  # signs +-, -+, ++, --
SINGLES = [(-2.9,), (-0.3,), (0.45,), (2.2,)]  # -2.9 / 3 and -2.9 * 3 ** -1 differ
POSITIVES = [(0.3,), (1.0,), (2.2,), (7.5,)]  # log and fractional powers need x > 0
AROUND_ZERO = [(-1.3,), (-0.2,), (0.2,), (1.3,)]  # relu on both sides of its kink
QUADS = [(0.7, -1.2, 0.4, 1.9), (-1.5, 0.6, -0.8, -0.3), (2.1, 1.1, -2.4, 0.5)]


def composite(a, b):
    return ((a * b).exp() + a * a) ** 0.5 / (1 + b.relu()) - (a * a + 1).log() * (a - b) ** 3


def composite_float(a, b):
    return ((math.exp(a * b) + a * a) ** 0.5 * (1 + max(0, b)) ** -1
            - math.log(a * a + 1) * (a - b) ** 3)


OPS = [
    ("a + b", lambda a, b: a + b, lambda a, b: a + b, [lambda a, b: 1, lambda a, b: 1], PAIRS),
    ("a * b", lambda a, b: a * b, lambda a, b: a * b, [lambda a, b: b, lambda a, b: a], PAIRS),
    ("a - b", lambda a, b: a - b, lambda a, b: a - b, [lambda a, b: 1, lambda a, b: -1], PAIRS),
    ("a / b", lambda a, b: a / b, lambda a, b: a * b ** -1,
     [lambda a, b: 1 / b, lambda a, b: -a / (b * b)], PAIRS),
    ("-a", lambda a: -a, lambda a: -a, [lambda a: -1], SINGLES),
    ("a ** 2", lambda a: a ** 2, lambda a: a ** 2, [lambda a: 2 * a], SINGLES),
    ("a ** 3", lambda a: a ** 3, lambda a: a ** 3, [lambda a: 3 * a * a], SINGLES),
    ("a ** -1", lambda a: a ** -1, lambda a: a ** -1, [lambda a: -1 / (a * a)], SINGLES),
    ("a ** 0.5", lambda a: a ** 0.5, lambda a: a ** 0.5, [lambda a: 0.5 / math.sqrt(a)],
     POSITIVES),
    ("a ** -0.5", lambda a: a ** -0.5, lambda a: a ** -0.5, [lambda a: -0.5 / (a * math.sqrt(a))],
     POSITIVES),
    ("a.log()", lambda a: a.log(), math.log, [lambda a: 1 / a], POSITIVES),
    ("a.exp()", lambda a: a.exp(), math.exp, [math.exp], SINGLES),
    ("a.relu()", lambda a: a.relu(), lambda a: max(0, a), [lambda a: float(a > 0)], AROUND_ZERO),
    ("2 * a", lambda a: 2 * a, lambda a: 2 * a, [lambda a: 2], SINGLES),
    ("a * 3", lambda a: a * 3, lambda a: a * 3, [lambda a: 3], SINGLES),
    ("a + 1", lambda a: a + 1, lambda a: a + 1, [lambda a: 1], SINGLES),
    ("1 + a", lambda a: 1 + a, lambda a: 1 + a, [lambda a: 1], SINGLES),
    ("a - 1", lambda a: a - 1, lambda a: a - 1, [lambda a: 1], SINGLES),
    ("1 - a", lambda a: 1 - a, lambda a: 1 - a, [lambda a: -1], SINGLES),
    ("a / 3", lambda a: a / 3, lambda a: a * 3 ** -1, [lambda a: 1 / 3], SINGLES),
    ("1 / a", lambda a: 1 / a, lambda a: 1 * a ** -1, [lambda a: -1 / (a * a)], SINGLES),
    ("a * a (one node used twice)", lambda a: a * a, lambda a: a * a, [lambda a: 2 * a], SINGLES),
    ("a + a (one node used twice)", lambda a: a + a, lambda a: a + a, [lambda a: 2], SINGLES),
    ("composite", composite, composite_float, None, PAIRS),
    ("sum", lambda a, b, c, d: sum([a, b * c, d.exp(), a * d]),
     lambda a, b, c, d: left_to_right([a, b * c, math.exp(d), a * d]), None, QUADS),
    ("dot (inputs shared and repeated)",
     lambda a, b, c, d: microgpt.dot([a, b, c, a], [d, a * b, c, b]),
     lambda a, b, c, d: left_to_right([a * d, b * (a * b), c * c, a * b]), None, QUADS),
]

# Against the derivative in plain math: each side is a product of at most three rounded
# factors (a power or exp from the C library is off by at most 1 unit in the last place, 2 U),
# so the two differ by at most a few U relative; 8 U allows for that. A wrong derivative (a
# factor or a sign off) misses by far more than that.
MATH_TOL = 8 * U
H = 1e-5  # the step of the central differences



def central_difference(f, point, i, h):
    """(f(x + h) - f(x - h)) / 2h in input i, with f computed as microgpt computes it (the
    Value class as written), and how far rounding can have moved it: the two evaluations'
    rounding bounds, over the distance between the two points."""
    results = []
    for x in (point[i] + h, point[i] - h):
        args = [Value(a) for a in point]
        args[i] = Value(x)
        y = f(*args)
        y.backward()
        results.append((x, y.data, rounding_bound(y)))
    (x_up, up, up_bound), (x_down, down, down_bound) = results
    distance = x_up - x_down  # 2h as the two points are in floats (exact, by Sterbenz's lemma)
    return (up - down) / distance, (up_bound + down_bound) / distance


def finite_difference_and_tolerance(f, point, i):
    """d f / d point[i] by central differences, and how far that can be from the true
    derivative: its rounding (above), and its truncation, H**2 * f''' / 6. Truncation is 4
    times as large at the step 2H, so the difference between the steps H and 2H is 3 times it,
    give or take both steps' rounding. Twice the sum, for the higher-order terms."""
    d1, rounding1 = central_difference(f, point, i, H)
    d2, rounding2 = central_difference(f, point, i, 2 * H)
    truncation = (abs(d2 - d1) + rounding1 + rounding2) / 3
    return d1, 2 * (truncation + rounding1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label, f, f_float, derivatives, points", OPS, ids=[op[0] for op in OPS])
def test_each_op_value_and_gradient_match_plain_math_and_finite_differences(
        label, f, f_float, derivatives, points, mode):
    for point in points:
        with in_mode(mode):
            xs = [Value(x) for x in point]
            out = f(*xs)
            out.backward()
        expected = f_float(*point)
        assert out.data == expected, (
            f"{label} at {point}: value expected {expected!r}, got {out.data!r}")
        for i, x in enumerate(xs):
            if derivatives is not None:
                exact = derivatives[i](*point)
                assert abs(x.grad - exact) <= MATH_TOL * abs(exact), (
                    f"{label} at {point}: d/d(input {i}) expected {exact!r} (plain math), "
                    f"got {x.grad!r}")
            fd, tolerance = finite_difference_and_tolerance(f, point, i)  # (as written)
            assert abs(x.grad - fd) <= tolerance, (
                f"{label} at {point}: d/d(input {i}) expected {fd!r} (finite differences, "
                f"within {tolerance:.2g}), got {x.grad!r}, difference {x.grad - fd:.3g}")


def test_relu_at_zero_has_value_zero_and_derivative_zero(mode):
    # relu's slope is 1.0 where a > 0 and 0.0 elsewhere, so exactly at 0 it is 0
    for zero in (0.0, -0.0):
        a = Value(zero)
        out = a.relu() * 3
        out.backward()
        assert out.data == 0 and a.grad == 0, (
            f"relu({zero!r}): expected value 0 and gradient 0, got {out.data!r} and {a.grad!r}")


def test_the_autograd_sections_example_gives_its_gradients(mode):
    # The comment's example: L = a * b + a with a = 2, b = 3. dL/da = b + 1 (two paths from a),
    # dL/db = a. Small integers: every number here is exact.
    a, b = Value(2.0), Value(3.0)
    L = a * b + a
    L.backward()
    assert (L.data, a.grad, b.grad) == (8.0, 4.0, 2.0), (
        f"expected L 8.0, a.grad 4.0, b.grad 2.0; got {L.data!r}, {a.grad!r}, {b.grad!r}")


def test_gradients_accumulate_over_every_use_of_a_node(mode):
    # Small integers: every product and sum below is exact, so == is the right comparison
    a, b, c = Value(3.0), Value(-2.0), Value(5.0)
    other = a * c  # another graph that uses a too; built first, its backward not yet called
    out = a * a + a * b * a + a + b * a
    out.backward()
    # d/da of a^2 + a^2 b + a + a b = 2a + 2ab + 1 + b; d/db = a^2 + a
    assert a.grad == 2 * 3 + 2 * 3 * -2 + 1 + -2, f"d/da: expected -7, got {a.grad!r}"
    assert b.grad == 9 + 3, f"d/db: expected 12, got {b.grad!r}"
    # backward follows children, never users: out's backward leaves the other graph untouched,
    # though it shares the leaf a
    assert (c.grad, other.grad) == (0, 0), (
        f"out.backward() reached the other graph: c.grad {c.grad!r}, other.grad {other.grad!r}")
    # A second backward adds to the gradients the first left (which is why train() sets each
    # p.grad back to 0 after a step): d other / da = c = 5 on top of -7
    other.backward()
    assert (a.grad, b.grad, c.grad) == (-7 + 5, 12, 3), (
        f"after other.backward(): expected a.grad -2, b.grad 12, c.grad 3, "
        f"got {a.grad!r}, {b.grad!r}, {c.grad!r}")


class EdgeRecorder:
    """A local derivative of 1 that logs its edge when backward uses it: `child.grad +=
    local_grad * v.grad` multiplies it exactly once per edge, in the order backward runs."""

    def __init__(self, log, label):
        self.log, self.label = log, label

    def __mul__(self, grad):
        self.log.append(self.label)
        return grad


def recorded_node(log, name, children):
    grads = tuple(EdgeRecorder(log, f"{name}->{child_name}") for child_name, _ in children)
    return name, Value(0.0, tuple(child for _, child in children), grads)


def test_backward_runs_in_reverse_depth_first_post_order_children_in_listed_order(mode):
    log = []
    a, b = ("a", Value(1.0)), ("b", Value(2.0))
    c = recorded_node(log, "c", [a, b])
    d = recorded_node(log, "d", [c, a])
    x = recorded_node(log, "x", [d, c])
    e = recorded_node(log, "e", [b, c])
    y = recorded_node(log, "y", [e])
    root = recorded_node(log, "root", [x, y])
    root[1].backward()
    # Post-order from root, first child first: c, d, x, e, y, root. Reversed, each node's edges
    # in the order it lists its children. (Breadth-first would give root, x, y, d, e, c; the
    # post-order with children last to first would give root, y, e, x, d, c.)
    expected = ["root->x", "root->y", "y->e", "e->b", "e->c", "x->d", "x->c",
                "d->c", "d->a", "c->a", "c->b"]
    assert log == expected, f"edge order expected {expected}, got {log}"
