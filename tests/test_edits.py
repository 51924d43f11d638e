"""What you read is what runs (README.md, Efficiency and your edits). A run uses the Efficiency
section's faster stand-ins only while the plain code they stand in for is as shipped: an edit to
the algorithm part of microgpt.py, or a function replaced from outside, runs, and a comment
changes nothing.

Each claim is checked on an edited copy of microgpt.py (helpers.copy_of_microgpt), run as a real
program, unless it says otherwise. Most runs are tiny (a 16-name file, 4 numbers wide, one step,
one sample): which functions run does not depend on the size."""
import ast
import functools
import importlib.util
import io
import json
import re
import tokenize

import pytest

import microgpt
from helpers import (NAMES_TEXT, copy_of_microgpt, expected_params_hash, first_difference,
                     golden, golden_args, printed, run_main, run_script, saved_params_hash, write)

TINY_SETTINGS = ["--n-embd", "4", "--n-head", "1", "--block-size", "4", "--num-steps", "1",
                 "--num-samples", "1"]
TINY = ["--input", "names.txt", *TINY_SETTINGS]


def copy_in(folder, edit):
    """An edited copy of microgpt.py in folder, with the names file TINY trains on."""
    folder.mkdir(exist_ok=True)
    write(folder / "names.txt", NAMES_TEXT)
    return copy_of_microgpt(folder, edit)


def ran(run, label):
    """A finished run that must have exited 0: its stdout and stderr, as text (as printed: see
    helpers.printed)."""
    out, err = printed(run.stdout).decode("utf-8"), printed(run.stderr).decode("utf-8")
    assert run.returncode == 0, f"{label}: exit {run.returncode}, stderr {err[-2000:]!r}"
    return out, err


def edit_lines(err):
    """The lines of stderr that speak of an edit (the run's reports speak of losses and
    samples)."""
    return [line for line in err.splitlines() if "edited" in line or "slower" in line]


# A copy with only its comments and blank lines changed ------------------------------------------

def comments_and_blank_lines_changed(source):
    """source with its comments and blank lines changed, and nothing else: of the comments on a
    line of their own, every other one removed and the rest reworded; every comment after code
    reworded; a comment between two blank lines added at the top of every function of more than
    one line (the Efficiency section's stand-ins included), and a comment after every one-line
    def."""
    lines = source.splitlines(keepends=True)
    own_line = 0
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        row, col = token.start
        before, words = lines[row - 1][:col], token.string.lstrip("#").strip()
        if before.strip():
            lines[row - 1] = f"{before}# in other words, {words}\n"
        else:
            own_line += 1
            lines[row - 1] = "" if own_line % 2 else f"{before}# In other words: {words}\n"
    source = "".join(lines)
    lines = source.splitlines(keepends=True)
    functions = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)]
    for node in sorted(functions, key=lambda node: node.lineno, reverse=True):
        first = node.body[0]
        if first.lineno == node.lineno:
            lines[node.lineno - 1] = lines[node.lineno - 1].rstrip("\n") + "  # a one-liner\n"
        else:
            lines.insert(first.lineno - 1, f"\n{' ' * first.col_offset}# A new comment\n\n")
    return "".join(lines)


def test_a_copy_with_only_its_comments_changed_runs_at_full_speed_and_gives_the_same_bits(
        tmp_path):
    """Comments and blank lines, added, removed and reworded, also inside the functions that the
    Efficiency section stands in for: the copy prints the short golden's bytes, trains its bits,
    says nothing of an edit, and its efficiency() puts the Efficiency section in place."""
    script = copy_in(tmp_path, comments_and_blank_lines_changed)
    args = [*golden_args("short"), "--save", "m.json"]
    out, err = ran(run_script(args, tmp_path, script=script), "the copy")
    expected = golden("short", "out").decode("utf-8")
    assert out == expected, "the copy's stdout differs from short's at " + first_difference(
        expected.encode(), out.encode())
    assert saved_params_hash(tmp_path / "m.json") == expected_params_hash("short")
    assert edit_lines(err) == [], f"the copy's run speaks of an edit: {err!r}"

    spec = importlib.util.spec_from_file_location("microgpt_with_new_comments", script)
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    with copy.efficiency() as on:
        assert on is True, f"the copy runs the plain code; it finds edited: {copy.edited()}"


# Edits that change the numbers ------------------------------------------------------------------

# config's settings (2 layers, 8 wide, ...), trained 3 steps: --plain costs about 1 s each
# (--held-out 0: the plain code's held-out loss takes seconds, and test_held_out.py checks it)
SMALL = [*golden_args("config"), "--num-steps", "3", "--num-samples", "3", "--held-out", "0",
         "--save", "m.json"]

EDITS = {  # what the edit is: (the shipped code, the edited code)
    "rmsnorm's epsilon 1e-5 -> 1e-6": ("(ms + 1e-5) ** -0.5", "(ms + 1e-6) ** -0.5"),
    "Value.__mul__, 0.1% larger": (
        "return Value(self.data * other.data, (self, other), (other.data, self.data))",
        "return Value(1.001 * self.data * other.data, (self, other), (1.001 * other.data, "
        "1.001 * self.data))"),
}


@pytest.fixture(scope="module")
def shipped_small_run(tmp_path_factory):
    """The shipped microgpt.py run with SMALL: (stdout, hash of the trained parameters)."""
    folder = tmp_path_factory.mktemp("shipped")
    script = copy_of_microgpt(folder)
    out, _ = ran(run_script(SMALL, folder, script=script), "the shipped file")
    return out, saved_params_hash(folder / "m.json")


@pytest.mark.parametrize("label", list(EDITS))
def test_an_edit_that_changes_the_numbers_runs_as_written(label, tmp_path, shipped_small_run):
    """The edited copy's run prints exactly what the same copy prints with --plain (the code as
    written, nothing swapped in), trains the same bits, and not what the shipped file gives. An
    edit of a function that the Efficiency section stands in for says so on stderr, in one line
    that names it and says the run is slower."""
    shipped, edited = EDITS[label]
    script = copy_in(tmp_path, lambda source: source.replace(shipped, edited))
    out, err = ran(run_script(SMALL, tmp_path, script=script), f"{label}, default run")
    default_hash = saved_params_hash(tmp_path / "m.json")
    plain_out, _ = ran(run_script([*SMALL, "--plain"], tmp_path, script=script), f"{label} --plain")
    plain_hash = saved_params_hash(tmp_path / "m.json")

    assert out == plain_out, f"{label}: the default run and --plain differ at " + first_difference(
        plain_out.encode(), out.encode())
    assert default_hash == plain_hash, f"{label}: same bytes, other bits than --plain"
    # The edit shows: the 4-decimal losses and the samples of 3 steps already differ
    assert out != shipped_small_run[0], f"{label}: the copy prints what the shipped file prints"
    assert default_hash != shipped_small_run[1]
    if label.startswith("Value.__mul__"):
        told = [line for line in err.splitlines() if "Value.__mul__" in line]
        assert len(told) == 1 and "slower" in told[0], f"{label}: stderr {err!r}"


# Every function the algorithm part runs, edited, runs -------------------------------------------

def algorithm_functions(source):
    """{name: its def} of every function of the algorithm part (before the Efficiency header),
    methods and nested functions as Value.backward, Value.backward.build_topo."""
    end = next(i for i, line in enumerate(source.splitlines(), 1) if line.startswith("# Effic"))
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)) and child.lineno < end:
                if isinstance(child, ast.FunctionDef):
                    found[prefix + child.name] = child
                visit(child, f"{prefix}{child.name}.")

    visit(ast.parse(source), "")
    return found


def marker(name):
    return f"@@ {name} was called @@"


def with_markers(names):
    """An edit: each function in names prints its marker first thing. A one-line def
    (def exp(self): return ...) becomes two lines, to make room for it."""
    def edit(source):
        lines = source.splitlines(keepends=True)
        functions = algorithm_functions(source)
        for name in sorted(names, key=lambda name: functions[name].lineno, reverse=True):
            node, first = functions[name], functions[name].body[0]
            if first.lineno == node.lineno:  # def exp(self): return ...
                indent = " " * (node.col_offset + 4)
                line = lines[node.lineno - 1]
                head, body = line[:first.col_offset].rstrip(), line[first.col_offset:]
                lines[node.lineno - 1] = f"{head}\n{indent}print({marker(name)!r})\n{indent}{body}"
            else:
                indent = " " * first.col_offset
                lines.insert(first.lineno - 1, f"{indent}print({marker(name)!r})\n")
        return "".join(lines)
    return edit


def markers_printed(out):  # (a marker may follow a step line, which ends in \r, not \n)
    return set(re.findall(r"@@ (\S+) was called @@", out))


def test_a_print_in_linear_prints_in_a_default_run(tmp_path):
    script = copy_in(tmp_path, with_markers(["linear"]))
    out, _ = ran(run_script(TINY, tmp_path, script=script), "linear with a print")
    assert marker("linear") in out, f"linear()'s print is not in the run's stdout: {out!r}"


def run_copy_in_this_process(script, argv, capsys):
    """The copy at script, imported from its own file under a name of its own (so that its
    functions' source is read from it), its main(argv) run here: (exit status, stdout)."""
    name = f"microgpt_copy_{abs(hash(str(script)))}"
    spec = importlib.util.spec_from_file_location(name, script)
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    return run_main(capsys, argv, module=copy)[:2]


def test_every_function_a_run_calls_runs_as_edited_in_a_default_run(tmp_path, monkeypatch,
                                                                    capsys):
    """Which functions of the algorithm part a run calls: those whose markers a --plain run
    prints, with a marker in every one. Then each of them, edited alone (in a copy of its own) to
    print its marker, prints it in a default run. The copies run in this process, each imported
    from its own file: the same main() as `python microgpt.py` runs, without an interpreter's
    start for each."""
    with open(microgpt.__file__, encoding="utf-8") as f:
        every = list(algorithm_functions(f.read()))
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "names.txt", NAMES_TEXT)
    (tmp_path / "all").mkdir()
    script = copy_of_microgpt(tmp_path / "all", with_markers(every))
    code, out = run_copy_in_this_process(script, [*TINY, "--plain"], capsys)
    assert code == 0, f"all, --plain: exit {code}"
    called = markers_printed(out)
    assert {"load_docs", "inference"} <= called, f"the observation failed: {sorted(called)}"

    not_run = {}
    for name in sorted(called):
        (tmp_path / name).mkdir()
        script = copy_of_microgpt(tmp_path / name, with_markers([name]))
        code, out = run_copy_in_this_process(script, TINY, capsys)
        if code != 0:
            not_run[name] = f"exit {code}"
        elif marker(name) not in out:
            not_run[name] = "its marker is not on stdout: something else ran in its place"
    assert not_run == {}, (
        f"of the {len(called)} functions a run calls, these did not run as edited: {not_run}")


# A function replaced from outside ---------------------------------------------------------------

def counted(original, calls, wrap):
    """original, counting its calls in the list calls; wrap, if given, applied to the counter
    (functools.wraps(original), as a decorator written with care does)."""
    def counting(*args):
        calls.append(args)
        return original(*args)
    return counting if wrap is None else wrap(original)(counting)


# A wrapper made with functools.wraps says it is the original (inspect.getsource follows its
# __wrapped__): the check must read the wrapper's own code, or the wrapper would never run.
@pytest.mark.parametrize("name, wrap", [
    ("softmax", None), ("Value.__mul__", None),
    pytest.param("softmax", functools.wraps, id="softmax-functools.wraps"),
])
def test_a_function_replaced_from_outside_runs_and_the_run_names_it(
        name, wrap, monkeypatch, capsys, tmp_path):
    """In this process: microgpt.softmax (or the method Value.__mul__) replaced by a wrapper that
    counts its calls. A default main() run calls the wrapper, and stderr names what it replaced."""
    owner, attribute = (microgpt.Value, name[6:]) if name.startswith("Value.") else (microgpt, name)
    calls = []
    monkeypatch.setattr(owner, attribute, counted(getattr(owner, attribute), calls, wrap))
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    code, _, err = run_main(capsys, ["--input", str(names), *TINY_SETTINGS])
    assert code == 0, err
    assert len(calls) > 0, f"the replaced {name} was never called; stderr {err!r}"
    assert any(name in line for line in edit_lines(err)), f"stderr does not name {name}: {err!r}"


# The shipped file -------------------------------------------------------------------------------

def test_the_shipped_file_runs_with_the_efficiency_section():
    """microgpt.py as shipped finds no function edited, so a default run is at full speed. A
    maintainer who changed one of them on purpose (and checked that the Efficiency section still
    gives the same bits) puts the checksums that this prints into SHIPPED."""
    with microgpt.efficiency() as on:
        pass
    functions = {name: vars(microgpt.Value)[name[6:]] if name.startswith("Value.")
                 else getattr(microgpt, name) for name in microgpt.SHIPPED}
    now = {name: microgpt.checksum(function) for name, function in functions.items()}
    assert on is True and microgpt.edited() == [], (
        f"{microgpt.edited()} differ from the shipped code, so every run uses the plain code. If "
        f"the change is meant, microgpt.py needs: SHIPPED = {json.dumps(now)}")


def test_a_file_whose_source_python_cannot_show_runs_the_plain_code_and_says_so(tmp_path):
    """Fed to python on standard input, the file has no source for inspect to read: the check
    cannot tell the plain code from an edit, so the run uses the plain code, says so once,
    naming what it stands in for, and prints what a normal run prints."""
    write(tmp_path / "names.txt", NAMES_TEXT)
    with open(microgpt.__file__, "rb") as source:
        fed = run_script(TINY, tmp_path, script="-", stdin=source)
    out, err = ran(fed, "fed on standard input")
    normal, _ = ran(run_script(TINY, tmp_path), "the file itself")
    assert out == normal, f"fed on stdin:\n{out}\nthe file:\n{normal}"
    lines = edit_lines(err)
    assert len(lines) == 1 and "(or unreadable)" in lines[0], err
    named = lines[0].split(": ", 1)[1].split(" edited")[0].split(", ")
    assert sorted(named) == sorted(microgpt.SHIPPED), (named, sorted(microgpt.SHIPPED))
