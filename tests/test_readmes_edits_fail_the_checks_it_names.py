"""README's "Break it to learn it": each edit it lists, made to a copy of microgpt.py as a learner
would make it, fails exactly the check that README names when the learner runs the gradient
checks with -x, as the first failure, after every check before it passed; and that failure says
what is wrong in words and numbers (the operation, what it should give and what backward gave).
README's table lists the edits of EDITS, in the same order."""
import ast
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

import microgpt
from helpers import INPUT, REPO, SCRIPT

# The gradient checks alone, from the most basic up, stopping at the first failure (-x): what
# README tells a learner to run after an edit
COMMAND = ["-x", "tests/test_autograd.py", "tests/test_model.py"]
HEADING = "### Break it to learn it"

# Each edit: the function it is in, the text it changes (on one line of the algorithm part, once)
# and what that becomes, what it teaches, the one check that fails, and how that check's message
# starts ('…' stands for a number whose last digits may differ from one Python to another).
EDITS = [
    ("Value.backward", "child.grad += local_grad * v.grad", "child.grad = local_grad * v.grad",
     "A node used in several places collects a gradient from each use: the chain rule adds up "
     "every path from the loss, hence `+=`.",
     "test_gradients_accumulate_over_every_use_of_a_node[plain]",
     "a + a (one node used twice) at a = -2.9: backward gave d/da = 1, but it is 2"),
    ("Value.backward", "for v in reversed(topo):", "for v in topo:",
     "A node can hand on its gradient only once it has all of it, from every node that uses "
     "it: backward goes from the loss back.",
     "test_backward_runs_in_reverse_depth_first_post_order_children_in_listed_order[plain]",
     "backward of the chain b = 2 * a, c = 3 * b, out = 4 * c: d out/da should be 24 "
     "(2 * 3 * 4), d out/db 12 and d out/dc 4, but backward gave 0, 0 and 4"),
    ("Value.__mul__", "(other.data, self.data)", "(self.data, other.data)",
     "A product's derivative with respect to each factor is the other factor.",
     "test_each_operation_has_the_value_and_derivatives_of_plain_math[a * b-plain]",
     "a * b at a = 1.5, b = -0.7: backward gave d/da = 1.5, but it is b = -0.7"),
    ("Value.__pow__", "(k * self.data**(k - 1),)", "(self.data**(k - 1),)",
     "The power rule, `d(a**k)/da = k * a**(k - 1)`: rmsnorm's `** -0.5` and every division "
     "(`a * b**-1`) use it.",
     "test_each_operation_has_the_value_and_derivatives_of_plain_math[a ** k-plain]",
     "a ** 2 at a = -2.9: backward gave d/da = -2.9, but it is 2 * a = -5.8"),
    ("Value.log", "(1 / self.data,)", "(self.data,)",
     "`d log(a)/da = 1/a`: the loss, `-log p`, pulls hardest on the least likely tokens.",
     "test_each_operation_has_the_value_and_derivatives_of_plain_math[a.log()-plain]",
     "a.log() at a = 0.3: backward gave d/da = 0.3, but it is 1 / a = 3.3333333333333335"),
    ("rmsnorm", "scale = (ms + 1e-5) ** -0.5", "scale = (ms.data + 1e-5) ** -0.5",
     "A number taken from `.data` is a constant to backward: no gradient flows through it. "
     "softmax's `max_val` may be one, as no probability depends on it; rmsnorm's `scale` may "
     "not. Every value stays the same: only a gradient check sees it.",
     "test_every_gradient_of_a_tiny_two_layer_model_matches_finite_differences",
     "the loss of 'noah' in a tiny 2-layer model: backward gave d loss/d wte[0][0] = …, but "
     "finite differences give … (within …); … of 480 gradients are off"),
]


def readme_rows():
    """The table README.md's EDITS should be, in Markdown."""
    command = " ".join(["python -m pytest", *COMMAND])
    rows = [f"| edit (in microgpt.py) | what it teaches | what fails (`{command}`) |",
            "|---|---|---|"]
    for where, old, new, teaches, check, message in EDITS:
        rows.append(f"| in `{where}`: `{old}` → `{new}` | {teaches} | `{check}`: `{message}` |")
    return "\n".join(rows)


def code_spans(text):
    return re.findall(r"`([^`]+)`", text)


def table_under_heading(readme):
    """The header and the rows (lists of cells) of the first table after HEADING in readme, or
    None if readme has no such heading."""
    if f"\n{HEADING}\n" not in readme:
        return None
    section = readme.split(f"\n{HEADING}\n", 1)[1]
    table = re.search(r"^(\|.*)\n\|[-| :]+\|\n((?:\|.*\n?)*)", section, flags=re.M)
    assert table, f"README's '{HEADING}' has no table; it should be:\n{readme_rows()}"
    rows = [line.strip().strip("|").split("|") for line in table.group(2).splitlines()]
    return table.group(1), rows


def test_readmes_break_it_table_lists_these_edits_and_their_checks():
    """README's table under its heading HEADING lists the edits of EDITS, in order: in each row,
    the function, the text and what it becomes, the check and the start of its message (the code
    spans; the words around them are README's own). Its header names the command."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        found = table_under_heading(f.read())
    if found is None:
        pytest.skip(f"README.md has no '{HEADING}' section yet. Its table, to paste and "
                    f"reword around the code:\n{readme_rows()}")
    header, rows = found
    assert f"`python -m pytest {' '.join(COMMAND)}`" in header, (
        f"README's table header should name the gradient checks' command: {header}")
    listed = [[code_spans(row[0]), code_spans(row[-1])] for row in rows]
    expected = [[[where, old, new], [check, message]]
                for where, old, new, _, check, message in EDITS]
    assert listed == expected, f"README's table should be, in its code:\n{readme_rows()}"


def edited_copy(folder, where, old, new):
    """folder, as a learner's clone: microgpt.py with old made new where README says, once, in
    the algorithm part (before its Efficiency section), and tests/, pyproject.toml, input.txt."""
    with open(SCRIPT, encoding="utf-8") as f:
        source = f.read()
    cut = source.index("\n# Efficiency")
    algorithm = source[:cut]
    assert algorithm.count(old) == 1 and "\n" not in old, (
        f"{old!r} is not on exactly one line of microgpt.py's algorithm part")
    line = algorithm[:algorithm.index(old)].count("\n") + 1
    assert function_at(source, line) == where, (
        f"{old!r} is in {function_at(source, line)}, not in {where}")
    folder.mkdir()
    (folder / "microgpt.py").write_text(algorithm.replace(old, new) + source[cut:], "utf-8")
    shutil.copytree(os.path.join(REPO, "tests"), folder / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    shutil.copyfile(os.path.join(REPO, "pyproject.toml"), folder / "pyproject.toml")
    shutil.copyfile(INPUT, folder / "input.txt")  # (test_model.py's KV cache test reads it)
    return folder


def function_at(source, line):
    """The name of the function or method (Class.method) whose definition holds that line."""
    names = []
    for node in ast.walk(ast.parse(source)):
        for child in node.body if isinstance(node, (ast.Module, ast.ClassDef)) else []:
            if isinstance(child, ast.FunctionDef) and child.lineno <= line <= child.end_lineno:
                prefix = f"{node.name}." if isinstance(node, ast.ClassDef) else ""
                names.append(prefix + child.name)
    return names[-1] if names else None


def gradient_checks(folder):
    """The gradient checks, run in folder as README gives them (with pytest-xdist installed too:
    -x keeps them in one process), without a cache folder and with a JUnit XML report: [(test
    name, outcome, message)] in the order they ran, and pytest's output."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    run = subprocess.run([sys.executable, "-m", "pytest", *COMMAND, "-p", "no:cacheprovider",
                          "-q", "--junitxml=report.xml"],
                         cwd=folder, env=env, capture_output=True, timeout=600)
    outcomes = []
    if (folder / "report.xml").exists():
        for case in ElementTree.parse(folder / "report.xml").iter("testcase"):
            outcome, message = "passed", ""
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    outcome, message = child.tag, child.get("message", "")
            outcomes.append((case.get("name"), outcome, message))
    return outcomes, (run.stdout + run.stderr).decode("utf-8", "replace")


def matches(message, start):
    """Whether message starts with start, '…' in start standing for a number (whose last digits
    may differ from one Python to another)."""
    return re.match(r"[-+.e\d]+".join(re.escape(piece) for piece in start.split("…")), message)


def problems_of(edit, outcomes, output):
    where, old, new, _, check, start = edit
    failed = [name for name, outcome, _ in outcomes if outcome in ("failure", "error")]
    if failed != [check] or outcomes[-1][0] != check:
        return [f"{old!r} -> {new!r}: the checks that fail are {failed}, not [{check!r}] (with -x, "
                f"the last to run); pytest said:\n{output[-3000:]}"]
    message = outcomes[-1][2].split("\n")[0]
    problems = []
    if not matches(message, f"AssertionError: {start}"):
        problems.append(f"{old!r} -> {new!r}: {check} says {message!r}, which does not start "
                        f"{start!r}")
    # Every check before it passed: it is the first cause. An [efficient] case runs the edit
    # with the Efficiency section in place, unless the edit is to one of the functions that
    # section stands in for: a run then uses the plain code, and the case is skipped, saying so.
    skipped = "edited: a run then uses the plain code"
    for name, outcome, said in outcomes[:-1]:
        if name.endswith("efficient]") and where in microgpt.SHIPPED:
            if outcome != "skipped" or skipped not in said:
                problems.append(f"{old!r} -> {new!r}: {name}, before {check}, should be "
                                f"skipped as '{skipped}', but it is {outcome}: {said!r}")
        elif outcome != "passed":
            problems.append(f"{old!r} -> {new!r}: {name}, before {check}, should pass, but it "
                            f"is {outcome}: {said!r}")
    return problems


@pytest.mark.slow
def test_each_edit_fails_exactly_its_named_check_saying_what_and_both_numbers(tmp_path):
    """Each edit of EDITS, in a copy of its own, and the gradient checks run with -x on all the
    copies at once, a process each: the named check is the one that fails, after every check
    before it passed (an [efficient] case skipped, saying why, where the edit makes a run use the
    plain code), and its message starts as EDITS says."""
    folders = [edited_copy(tmp_path / f"edit{i}", where, old, new)
               for i, (where, old, new, *_) in enumerate(EDITS)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(gradient_checks, folders))
    problems = [problem for edit, (outcomes, output) in zip(EDITS, results)
                for problem in problems_of(edit, outcomes, output)]
    assert not problems, "\n".join(problems)
