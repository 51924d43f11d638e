"""Claims about the autograd engine (microgpt.py's Autograd section): each operation's value and
derivative, and how `backward` orders and accumulates the chain rule. Each claim holds for the
Value class as written and with the Efficiency section's devices in place (tests/test_efficiency.py
shows that those change no bit)."""
import math

import pytest

import microgpt
from microgpt import Value

MODES = ["plain", "efficient"]


@pytest.fixture(params=MODES)
def mode(request):
    """The Value class as written, or with the Efficiency section's methods (as a run has it)."""
    with microgpt.efficiency(enabled=request.param == "efficient"):
        yield request.param

# Central differences: (f(x + H) - f(x - H)) / 2H is off by about H**2 * |f'''| / 6 (truncation)
# plus 1e-16 * |f| / H (rounding). For the functions and points below |f| and |f'''| stay under
# ~1000, so the error is under ~2e-7 at H = 1e-6 (the worst seen is 2.4e-10). FD_TOL = 1e-6,
# relative once the gradient exceeds 1, is above that bound; a wrong derivative misses by > 0.1.
H = 1e-6
FD_TOL = 1e-6
# A value computed through Value may differ from the plain-float formula by a rounding or two
# (a / b is a * b ** -1 there); 1e-14 relative allows for that and nothing else.
VALUE_TOL = 1e-14

PAIRS = [(1.5, -0.7), (-2.0, 0.3), (0.4, 2.5), (-0.9, -1.6)]  # signs: +-, -+, ++, --
SINGLES = [(-1.7,), (-0.3,), (0.45,), (2.2,)]
POSITIVES = [(0.3,), (1.0,), (2.2,), (7.5,)]  # log and fractional powers need x > 0
AROUND_ZERO = [(-1.3,), (-0.2,), (0.2,), (1.3,)]  # relu on both sides of its kink
QUADS = [(0.7, -1.2, 0.4, 1.9), (-1.5, 0.6, -0.8, -0.3), (2.1, 1.1, -2.4, 0.5)]


def composite(a, b):
    return ((a * b).exp() + a * a) ** 0.5 / (1 + b.relu()) - (a * a + 1).log() * (a - b) ** 3


def composite_float(a, b):
    return (math.exp(a * b) + a * a) ** 0.5 / (1 + max(0, b)) - math.log(a * a + 1) * (a - b) ** 3


# (label, function of Values, the same function of floats, points)
OPS = [
    ("a + b", lambda a, b: a + b, lambda a, b: a + b, PAIRS),
    ("a * b", lambda a, b: a * b, lambda a, b: a * b, PAIRS),
    ("a - b", lambda a, b: a - b, lambda a, b: a - b, PAIRS),
    ("a / b", lambda a, b: a / b, lambda a, b: a / b, PAIRS),
    ("-a", lambda a: -a, lambda a: -a, SINGLES),
    ("a ** 2", lambda a: a ** 2, lambda a: a ** 2, SINGLES),
    ("a ** 3", lambda a: a ** 3, lambda a: a ** 3, SINGLES),
    ("a ** -1", lambda a: a ** -1, lambda a: 1 / a, SINGLES),
    ("a ** 0.5", lambda a: a ** 0.5, math.sqrt, POSITIVES),
    ("a ** -0.5", lambda a: a ** -0.5, lambda a: 1 / math.sqrt(a), POSITIVES),
    ("a.log()", lambda a: a.log(), math.log, POSITIVES),
    ("a.exp()", lambda a: a.exp(), math.exp, SINGLES),
    ("a.relu()", lambda a: a.relu(), lambda a: max(0.0, a), AROUND_ZERO),
    ("2 * a", lambda a: 2 * a, lambda a: 2 * a, SINGLES),
    ("a * 3", lambda a: a * 3, lambda a: a * 3, SINGLES),
    ("a + 1", lambda a: a + 1, lambda a: a + 1, SINGLES),
    ("1 + a", lambda a: 1 + a, lambda a: 1 + a, SINGLES),
    ("a - 1", lambda a: a - 1, lambda a: a - 1, SINGLES),
    ("1 - a", lambda a: 1 - a, lambda a: 1 - a, SINGLES),
    ("a / 4", lambda a: a / 4, lambda a: a / 4, SINGLES),
    ("1 / a", lambda a: 1 / a, lambda a: 1 / a, SINGLES),
    ("a * a (one node used twice)", lambda a: a * a, lambda a: a * a, SINGLES),
    ("a + a (one node used twice)", lambda a: a + a, lambda a: a + a, SINGLES),
    ("composite", composite, composite_float, PAIRS),
    ("sum", lambda a, b, c, d: sum([a, b * c, d.exp(), a * d]),
     lambda a, b, c, d: a + b * c + math.exp(d) + a * d, QUADS),
    ("dot (inputs shared and repeated)",
     lambda a, b, c, d: microgpt.dot([a, b, c, a], [d, a * b, c, b]),
     lambda a, b, c, d: a * d + b * (a * b) + c * c + a * b, QUADS),
]


def finite_difference(f, point, i):
    """d f / d point[i] by central differences, computing f with Values as the model does."""
    def f_at(x):
        args = list(point)
        args[i] = x
        return f(*[Value(a) for a in args]).data
    return (f_at(point[i] + H) - f_at(point[i] - H)) / (2 * H)


@pytest.mark.parametrize("label, f, f_float, points", OPS, ids=[op[0] for op in OPS])
def test_each_op_value_and_gradient_match_plain_math_and_finite_differences(
        label, f, f_float, points, mode):
    for point in points:
        xs = [Value(x) for x in point]
        out = f(*xs)
        expected = f_float(*point)
        assert math.isclose(out.data, expected, rel_tol=VALUE_TOL, abs_tol=VALUE_TOL), (
            f"{label} at {point}: value expected {expected!r}, got {out.data!r}")
        out.backward()
        for i, x in enumerate(xs):
            fd = finite_difference(f, point, i)
            assert abs(x.grad - fd) <= FD_TOL * max(1.0, abs(fd)), (
                f"{label} at {point}: d/d(input {i}) expected {fd!r} (finite differences), "
                f"got {x.grad!r}, difference {x.grad - fd:.3g}")


def test_relu_at_zero_has_value_zero_and_derivative_zero(mode):
    # relu's local derivative is float(a > 0) (Value.relu), so exactly at 0 it is 0.
    for zero in (0.0, -0.0):
        a = Value(zero)
        out = a.relu() * 3
        out.backward()
        assert out.data == 0 and a.grad == 0, (
            f"relu({zero!r}): expected value 0 and gradient 0, got {out.data!r} and {a.grad!r}")


# Backward mechanics.

def test_gradients_accumulate_over_every_use_of_a_node(mode):
    # Small integers: every product and sum below is exact, so == is the right comparison.
    a, b, c = Value(3.0), Value(-2.0), Value(5.0)
    other = a * c  # another graph that uses a too; built first, its backward not yet called
    out = a * a + a * b * a + a + b * a
    out.backward()
    assert a.grad == 2 * 3 + 2 * 3 * -2 + 1 + -2, f"d/da: expected -7, got {a.grad!r}"
    assert b.grad == 9 + 3, f"d/db: expected 12, got {b.grad!r}"
    # backward follows children, never users: out's backward leaves the other graph untouched,
    # though it shares the leaf a.
    assert (c.grad, other.grad) == (0, 0), (
        f"out.backward() reached the other graph: c.grad {c.grad!r}, other.grad {other.grad!r}")
    # A second backward adds to the gradients the first left (train() zeroes p.grad after each
    # step for this reason): d other / da = c = 5 on top of -7.
    other.backward()
    assert (a.grad, b.grad, c.grad) == (-7 + 5, 12, 3), (
        f"after other.backward(): expected a.grad -2, b.grad 12, c.grad 3, "
        f"got {a.grad!r}, {b.grad!r}, {c.grad!r}")


class EdgeRecorder:
    """A local derivative of 1 that logs its edge when backward uses it: `child.grad +=
    local_grad * grad` multiplies it exactly once per edge, in the order backward runs."""

    def __init__(self, log, label):
        self.log, self.label = log, label

    def __mul__(self, grad):
        self.log.append(self.label)
        return grad


def recorded_node(log, name, children):
    names = [c[0] for c in children]
    grads = tuple(EdgeRecorder(log, f"{name}->{child}") for child in names)
    return name, Value(0.0, tuple(c[1] for c in children), grads)


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
    # in the order it lists its children. (Breadth-first would give root, x, y, d, e, c.)
    expected = ["root->x", "root->y", "y->e", "e->b", "e->c", "x->d", "x->c",
                "d->c", "d->a", "c->a", "c->b"]
    assert log == expected, f"edge order expected {expected}, got {log}"
