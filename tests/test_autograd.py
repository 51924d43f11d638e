"""Claims about the autograd engine (microgpt.py's Autograd section): each operation's value and
derivative, and how backward() orders and accumulates the chain rule. Each claim holds for the
Value class as written ("plain") and with the Efficiency section in place, as a run has it
("efficient"; tests/test_efficiency.py shows that it changes no bit).

These are the gradient checks that a learner who edits the Autograd section runs (README, Break it
to learn it). Each failure says in words and numbers what is wrong: which operation or rule, at
which inputs, what it should give and what backward gave. The tests come in the order in which
they build on one another, and pytest runs them in that order: backward's start, backward's order,
each operation, gradients summed over every use, the Autograd section's example, relu at 0, then
composites of all these (and after them, in tests/test_model.py, the whole model's gradients);
within each, [plain] before [efficient]. So with -x, which stops at the first failure, an edit
fails the most basic check that it breaks, and that one only."""
import contextlib
import math

import pytest

import microgpt
from helpers import U, rounding_bound
from microgpt import Value

MODES = ["plain", "efficient"]


@contextlib.contextmanager
def in_mode(mode):
    """The Value class as written ("plain"), or with the Efficiency section in place, as a run has
    it ("efficient"). Once the plain code that the section stands in for is edited, a run uses the
    plain code instead: then the "efficient" case is what the "plain" one checks, and is skipped,
    saying so."""
    if mode == "efficient" and microgpt.edited():
        pytest.skip(f"{', '.join(microgpt.edited())} edited: a run then uses the plain code, "
                    "which the [plain] case checks")
    with microgpt.efficiency(plain=mode == "plain") as fast:
        assert fast == (mode == "efficient"), "the Efficiency section did not go in"
        yield


def left_to_right(terms):
    """((0 + t0) + t1) + ..., as sum() adds Values. (Python 3.12's sum() of floats rounds less
    often, so it is not the arithmetic of microgpt's sum of Values.)"""
    total = 0
    for t in terms:
        total += t
    return total


# The operations. Each case is one or more forms: a function of Values, the same function of
# plain floats, in the order of operations that microgpt.py's Value class fixes (a - b is
# a + (-b), a / b is a * b ** -1), so that the values must be equal to the last bit; then each
# derivative in plain math, as a formula and a function (None where a formula would be the test
# rewriting the chain rule); and the points. Then where the derivative is recorded, for the
# failure message.
PAIRS = [(1.5, -0.7), (-2.0, 0.3), (0.4, 2.5), (-0.9, -1.6)]  # signs +-, -+, ++, --
SINGLES = [(-2.9,), (-0.3,), (0.45,), (2.2,)]  # -2.9 / 3 and -2.9 * 3 ** -1 differ
POSITIVES = [(0.3,), (1.0,), (2.2,), (7.5,)]  # log and fractional powers need x > 0
AROUND_ZERO = [(-1.3,), (-0.2,), (0.2,), (1.3,)]  # relu on both sides of its kink
QUADS = [(0.7, -1.2, 0.4, 1.9), (-1.5, 0.6, -0.8, -0.3), (2.1, 1.1, -2.4, 0.5)]

OPERATIONS = {
    # The primitives: each makes one node, whose local derivatives backward multiplies in
    "a + b": ([("a + b", lambda a, b: a + b, lambda a, b: a + b,
                [("1", lambda a, b: 1), ("1", lambda a, b: 1)], PAIRS)],
              "the local derivatives Value.__add__ records"),
    "a * b": ([("a * b", lambda a, b: a * b, lambda a, b: a * b,
                [("b", lambda a, b: b), ("a", lambda a, b: a)], PAIRS)],
              "the local derivatives Value.__mul__ records"),
    "a ** k": ([("a ** 2", lambda a: a ** 2, lambda a: a ** 2, [("2 * a", lambda a: 2 * a)],
                 SINGLES),
                ("a ** 3", lambda a: a ** 3, lambda a: a ** 3,
                 [("3 * a ** 2", lambda a: 3 * a * a)], SINGLES),
                ("a ** -1", lambda a: a ** -1, lambda a: a ** -1,
                 [("-1 * a ** -2", lambda a: -1 / (a * a))], SINGLES),
                ("a ** 0.5", lambda a: a ** 0.5, lambda a: a ** 0.5,
                 [("0.5 * a ** -0.5", lambda a: 0.5 / math.sqrt(a))], POSITIVES),
                ("a ** -0.5", lambda a: a ** -0.5, lambda a: a ** -0.5,
                 [("-0.5 * a ** -1.5", lambda a: -0.5 / (a * math.sqrt(a)))], POSITIVES)],
               "the local derivative Value.__pow__ records"),
    "a.log()": ([("a.log()", lambda a: a.log(), math.log, [("1 / a", lambda a: 1 / a)],
                  POSITIVES)], "the local derivative Value.log records"),
    "a.exp()": ([("a.exp()", lambda a: a.exp(), math.exp, [("exp(a)", math.exp)], SINGLES)],
                "the local derivative Value.exp records"),
    "a.relu()": ([("a.relu()", lambda a: a.relu(), lambda a: max(0, a),
                   [("1 if a > 0 else 0", lambda a: float(a > 0))], AROUND_ZERO)],
                 "the local derivative Value.relu records"),
    # Built from the primitives, as the Value class defines them (those two nodes deep need
    # backward's order too, which is checked before them)
    "-a": ([("-a", lambda a: -a, lambda a: -a, [("-1", lambda a: -1)], SINGLES)],
           "Value.__neg__: -a is a * -1"),
    "a - b": ([("a - b", lambda a, b: a - b, lambda a, b: a - b,
                [("1", lambda a, b: 1), ("-1", lambda a, b: -1)], PAIRS)],
              "Value.__sub__: a - b is a + (-b)"),
    "a / b": ([("a / b", lambda a, b: a / b, lambda a, b: a * b ** -1,
                [("1 / b", lambda a, b: 1 / b), ("-a / b ** 2", lambda a, b: -a / (b * b))],
                PAIRS)],
              "Value.__truediv__: a / b is a * b ** -1"),
    # With a plain number, which becomes a Value with no children: a constant
    "2 * a": ([("2 * a", lambda a: 2 * a, lambda a: 2 * a, [("2", lambda a: 2)], SINGLES)],
              "Value.__rmul__: 2 * a is a * 2"),
    "a * 3": ([("a * 3", lambda a: a * 3, lambda a: a * 3, [("3", lambda a: 3)], SINGLES)],
              "Value.__mul__, with 3 as Value(3)"),
    "a + 1": ([("a + 1", lambda a: a + 1, lambda a: a + 1, [("1", lambda a: 1)], SINGLES)],
              "Value.__add__, with 1 as Value(1)"),
    "1 + a": ([("1 + a", lambda a: 1 + a, lambda a: 1 + a, [("1", lambda a: 1)], SINGLES)],
              "Value.__radd__: 1 + a is a + 1"),
    "a - 1": ([("a - 1", lambda a: a - 1, lambda a: a - 1, [("1", lambda a: 1)], SINGLES)],
              "Value.__sub__: a - 1 is a + (-1)"),
    "1 - a": ([("1 - a", lambda a: 1 - a, lambda a: 1 - a, [("-1", lambda a: -1)], SINGLES)],
              "Value.__rsub__: 1 - a is 1 + (-a)"),
    "a / 3": ([("a / 3", lambda a: a / 3, lambda a: a * 3 ** -1, [("1 / 3", lambda a: 1 / 3)],
                SINGLES)],
              "Value.__truediv__: a / 3 is a * 3 ** -1"),
    "1 / a": ([("1 / a", lambda a: 1 / a, lambda a: 1 * a ** -1,
                [("-1 / a ** 2", lambda a: -1 / (a * a))], SINGLES)],
              "Value.__rtruediv__: 1 / a is 1 * a ** -1"),
}

# One node used twice: it must collect a gradient from each use
USED_TWICE = [("a + a (one node used twice)", lambda a: a + a, lambda a: a + a,
               [("2", lambda a: 2)], SINGLES),
              ("a * a (one node used twice)", lambda a: a * a, lambda a: a * a,
               [("2 * a", lambda a: 2 * a)], SINGLES)]
SUMS_WHERE = "Value.backward adds up a contribution from each use: child.grad +="


def composite(a, b):
    return ((a * b).exp() + a * a) ** 0.5 / (1 + b.relu()) - (a * a + 1).log() * (a - b) ** 3


def composite_float(a, b):
    return ((math.exp(a * b) + a * a) ** 0.5 * (1 + max(0, b)) ** -1
            - math.log(a * a + 1) * (a - b) ** 3)


COMPOSITES = {
    "composite": ("composite", composite, composite_float, None, PAIRS),
    "sum": ("sum([a, b * c, d.exp(), a * d])", lambda a, b, c, d: sum([a, b * c, d.exp(), a * d]),
            lambda a, b, c, d: left_to_right([a, b * c, math.exp(d), a * d]), None, QUADS),
    "dot": ("dot([a, b, c, a], [d, a * b, c, b]) (inputs shared and repeated)",
            lambda a, b, c, d: microgpt.dot([a, b, c, a], [d, a * b, c, b]),
            lambda a, b, c, d: left_to_right([a * d, b * (a * b), c * c, a * b]), None, QUADS),
}

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


def check_form(form, where, mode):
    """A form's value at each of its points, against plain floats, bit for bit; and the gradient
    backward gives each input, against the derivative in plain math and finite differences."""
    label, f, f_float, derivatives, points = form
    with in_mode(mode):
        results = []
        for point in points:
            xs = [Value(x) for x in point]
            out = f(*xs)
            out.backward()
            results.append((point, out.data, [x.grad for x in xs]))
    for point, value, grads in results:
        at = ", ".join(f"{name} = {x!r}" for name, x in zip("abcd", point))
        expected = f_float(*point)
        assert value == expected, (
            f"{label} at {at}: the value is {value!r}, but plain math in floats gives "
            f"{expected!r} ({where})")
        for i, (name, grad) in enumerate(zip("abcd", grads)):
            if derivatives is not None:
                formula, derivative = derivatives[i]
                exact = derivative(*point)
                shown = formula if formula == str(exact) else f"{formula} = {exact!r}"
                off = abs(grad - exact)
                assert off <= MATH_TOL * abs(exact), (
                    f"{label} at {at}: backward gave d/d{name} = {grad!r}, but it is {shown} "
                    f"({where})")
            fd, tolerance = finite_difference_and_tolerance(f, point, i)  # (as written)
            off = abs(grad - fd)
            assert off <= tolerance, (
                f"{label} at {at}: backward gave d/d{name} = {grad!r}, but finite differences "
                f"give {fd!r} (within {tolerance:.2g}; off by {grad - fd:.3g}) ({where})")


# The tests, from the most basic up (pytest runs them in this order; see the docstring above).
# backward itself first: where it starts, and the order it visits the nodes in, which needs no
# operation (the nodes are made by hand, with their local derivatives).

@pytest.mark.parametrize("mode", MODES)
def test_backward_starts_from_a_gradient_of_1_for_its_output(mode):
    with in_mode(mode):
        a = Value(3.0)
        a.backward()
    assert a.grad == 1, (
        f"Value(3.0).backward(): the node's own gradient should be 1 (d out/d out, where the "
        f"chain rule starts: every other gradient is a product of it), but it is {a.grad!r} "
        f"(Value.backward)")


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


@pytest.mark.parametrize("mode", MODES)
def test_backward_runs_in_reverse_depth_first_post_order_children_in_listed_order(mode):
    """So that each node has its whole gradient before it hands it on (a chain shows it)."""
    with in_mode(mode):
        # A chain of nodes made with their local derivatives, 2, 3 and 4: b = 2a, c = 3b,
        # out = 4c. Each node can hand on its grad only once it has it, from the node above.
        a = Value(1.0)
        b = Value(2.0, (a,), (2,))
        c = Value(6.0, (b,), (3,))
        out = Value(24.0, (c,), (4,))
        out.backward()
        log = []
        leaf_a, leaf_b = ("a", Value(1.0)), ("b", Value(2.0))
        c_ = recorded_node(log, "c", [leaf_a, leaf_b])
        d_ = recorded_node(log, "d", [c_, leaf_a])
        x_ = recorded_node(log, "x", [d_, c_])
        e_ = recorded_node(log, "e", [leaf_b, c_])
        y_ = recorded_node(log, "y", [e_])
        root = recorded_node(log, "root", [x_, y_])
        root[1].backward()
    assert (a.grad, b.grad, c.grad) == (24, 12, 4), (
        f"backward of the chain b = 2 * a, c = 3 * b, out = 4 * c: d out/da should be 24 "
        f"(2 * 3 * 4), d out/db 12 and d out/dc 4, but backward gave {a.grad!r}, {b.grad!r} and "
        f"{c.grad!r}: a node handed on its gradient before it had received it (Value.backward "
        f"must visit each node after every node that uses it: reversed(topo))")
    # Post-order from root, first child first: c, d, x, e, y, root. Reversed, each node's edges
    # in the order it lists its children. (Breadth-first would give root, x, y, d, e, c; the
    # post-order with children last to first would give root, y, e, x, d, c.)
    expected = ["root->x", "root->y", "y->e", "e->b", "e->c", "x->d", "x->c",
                "d->c", "d->a", "c->a", "c->b"]
    assert log == expected, (
        f"Value.backward used the edges in the order {log}, but reverse depth-first post-order, "
        f"children in the order each node lists them, is {expected}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", OPERATIONS)
def test_each_operation_has_the_value_and_derivatives_of_plain_math(name, mode):
    """And its derivatives match finite differences too."""
    forms, where = OPERATIONS[name]
    for form in forms:
        check_form(form, where, mode)


@pytest.mark.parametrize("mode", MODES)
def test_gradients_accumulate_over_every_use_of_a_node(mode):
    """Over each use in one graph, and over a second backward; and never into another graph."""
    for form in USED_TWICE:
        check_form(form, SUMS_WHERE, mode)
    # Small integers: every product and sum below is exact, so == is the right comparison
    with in_mode(mode):
        a, b, c = Value(3.0), Value(-2.0), Value(5.0)
        other = a * c  # another graph that uses a too; built first, its backward not yet called
        out = a * a + a * b * a + a + b * a
        out.backward()
        grads = (a.grad, b.grad, c.grad, other.grad)
        other.backward()
    # d/da of a^2 + a^2 b + a + a b = 2a + 2ab + 1 + b; d/db = a^2 + a
    assert grads[:2] == (2 * 3 + 2 * 3 * -2 + 1 + -2, 9 + 3), (
        f"a * a + a * b * a + a + b * a at a = 3.0, b = -2.0: d/da should be 2a + 2ab + 1 + b = "
        f"-7.0 and d/db a ** 2 + a = 12.0, a contribution from each use, but backward gave "
        f"{grads[0]!r} and {grads[1]!r} ({SUMS_WHERE})")
    # backward follows children, never users: out's backward leaves the other graph untouched,
    # though it shares the leaf a
    assert grads[2:] == (0, 0), (
        f"out.backward() reached another graph that uses a: c.grad {grads[2]!r}, other.grad "
        f"{grads[3]!r}, where both should still be 0")
    # A second backward adds to the gradients the first left (which is why train() sets each
    # p.grad back to 0 after a step): d other / da = c = 5 on top of -7
    assert (a.grad, b.grad, c.grad) == (-7 + 5, 12, 3), (
        f"a second backward, of other = a * c, should add d other/da = c = 5 to the -7 that "
        f"a.grad held, giving -2.0 (and c.grad 3.0, b.grad still 12.0), but a.grad is "
        f"{a.grad!r}, c.grad {c.grad!r} and b.grad {b.grad!r} ({SUMS_WHERE})")


@pytest.mark.parametrize("mode", MODES)
def test_the_autograd_sections_example_gives_its_gradients(mode):
    # The Autograd section's example: L = a * b + a with a = 2, b = 3. dL/da = b + 1 (two paths
    # from a), dL/db = a. Small integers: every number here is exact.
    with in_mode(mode):
        a, b = Value(2.0), Value(3.0)
        L = a * b + a
        L.backward()
    assert (L.data, a.grad, b.grad) == (8.0, 4.0, 2.0), (
        f"the Autograd section's example, L = a * b + a at a = 2.0, b = 3.0: L should be 8.0, "
        f"dL/da b + 1 = 4.0 (b along the path through a * b, 1 along the other) and dL/db "
        f"a = 2.0, but it gave {L.data!r}, {a.grad!r} and {b.grad!r}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("zero", [0.0, -0.0])
def test_relu_at_zero_has_value_zero_and_derivative_zero(zero, mode):
    """relu's slope is 1.0 where a > 0 and 0.0 elsewhere, so exactly at 0 it is 0."""
    with in_mode(mode):
        a = Value(zero)
        out = a.relu() * 3
        out.backward()
    assert out.data == 0 and a.grad == 0, (
        f"3 * a.relu() at a = {zero!r}: the value should be 0 and d/da 0 (relu's slope is 0 "
        f"where a is not above 0), but they are {out.data!r} and {a.grad!r} (Value.relu)")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", COMPOSITES)
def test_composites_of_the_operations_match_finite_differences(name, mode):
    """Their values match plain floats bit for bit, as the operations' do."""
    check_form(COMPOSITES[name], "built from the operations above", mode)
