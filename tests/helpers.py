"""What the tests share: where things are, microgpt run in this process or as a program, the
golden files, and small models built from microgpt's own functions.

pyproject.toml puts tests/ on the import path, so a test file says `from helpers import ...`."""
import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

import microgpt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "microgpt.py")
INPUT = os.path.join(REPO, "input.txt")
GOLDEN = os.path.join(REPO, "tests", "golden")
HEADER = "\n--- inference (new, hallucinated names) ---\n"
FAMILY = "pypy" if sys.implementation.name == "pypy" else "cpython"  # for the parameter hashes

# A small list of names, for runs that need a data file but not input.txt's 32,033 names
NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia",
         "liam", "noah", "william", "james", "oliver", "benjamin", "elijah", "lucas"]
NAMES_TEXT = "".join(f"{name}\n" for name in NAMES)


def run_main(capsys, argv, module=microgpt):
    """microgpt.main(argv) (or that of a copy of microgpt, module) in this process: (exit
    status, stdout, stderr)."""
    try:
        module.main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    if isinstance(code, str):  # sys.exit("microgpt: ...") prints its message and exits with 1
        code, err = 1, err + code + "\n"
    return code, out, err


def run_quietly(argv):
    """microgpt.main(argv) in this process without capsys (for a module-scoped fixture, which
    cannot use it): (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            microgpt.main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def run_script(args, cwd, env=None, timeout=300, script=SCRIPT, stdin=subprocess.DEVNULL):
    """microgpt.py (or a copy: script) as a real program under this interpreter: the
    CompletedProcess, with stdout and stderr as bytes."""
    return subprocess.run([sys.executable, script, *args], cwd=cwd, env=env, stdin=stdin,
                          capture_output=True, timeout=timeout)


def start_once(folder, args, timeout=900):
    """Start `microgpt.py ARGS` in folder (a pathlib.Path, made here, with a copy of input.txt),
    in the background, unless a process of this test run has already started it there: the one
    that makes folder does, so that it runs once however pytest-xdist spreads the tests. Returns
    the program's Popen and the thread that waits for it and writes its outcome into folder (see
    outcome()), or None."""
    try:
        folder.mkdir()
    except FileExistsError:
        return None
    shutil.copyfile(INPUT, folder / "input.txt")
    program = subprocess.Popen([sys.executable, SCRIPT, *args], cwd=folder,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)

    def wait_and_write_outcome():
        status = "the run did not finish"
        try:
            stdout, stderr = program.communicate(timeout=timeout)
            (folder / "stdout").write_bytes(stdout)
            (folder / "stderr").write_bytes(stderr)
            status = str(program.returncode)
        finally:  # the status last, and whole: whoever waits for it reads the rest after it
            (folder / "status.part").write_text(status)
            os.replace(folder / "status.part", folder / "status")

    thread = threading.Thread(target=wait_and_write_outcome, daemon=True)
    thread.start()
    return program, thread


def outcome(folder, timeout=900):
    """The outcome of start_once's run in folder, once it has ended (waiting for it, whichever
    process started it): (stdout as bytes, stderr as text, exit status)."""
    deadline = time.monotonic() + timeout
    while not (folder / "status").exists():
        assert time.monotonic() < deadline, f"no outcome in {folder} after {timeout} s"
        time.sleep(0.1)
    status = (folder / "status").read_text()
    assert status.lstrip("-").isdigit(), f"microgpt.py {folder}: {status}"
    out, err = printed((folder / "stdout").read_bytes()), printed((folder / "stderr").read_bytes())
    return out, err.decode("utf-8"), int(status)


def write(path, data):
    """path (a pathlib.Path) with data written to it, as UTF-8 if it is text."""
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def assert_one_error_line(code, out, err, expected_code=1, expected_out=""):
    """The error contract: the exit status, stdout as far as the run got, and on stderr exactly
    one line that starts with 'microgpt: ' (never a traceback). Returns that line."""
    evidence = f"exit {code}, stdout {out!r}, stderr {err!r}"
    assert code == expected_code, evidence
    assert out == expected_out, evidence
    assert "Traceback" not in err, evidence
    assert len(err.splitlines()) == 1 and err.startswith("microgpt: "), evidence
    return err.rstrip("\n")


def sample_texts(out):
    """The names a run printed, in order."""
    return re.findall(r"^sample +\d+: (.*)$", out, flags=re.M)


def encode(doc, uchars):
    """A document's tokens as train() makes them: BOS, its characters' ids, BOS."""
    bos = len(uchars)
    return [bos] + [uchars.index(ch) for ch in doc] + [bos]


def doc_loss(tokens, state_dict):
    """The loss of one document, built as train() builds it, from microgpt's own functions."""
    n = min(microgpt.block_size, len(tokens) - 1)
    keys = [[] for _ in range(microgpt.n_layer)]
    values = [[] for _ in range(microgpt.n_layer)]
    losses = []
    for pos in range(n):
        probs = microgpt.softmax(microgpt.gpt(tokens[pos], pos, keys, values, state_dict))
        losses.append(-probs[tokens[pos + 1]].log())
    return (1 / n) * sum(losses)


def configure(**settings):
    """Set microgpt's settings (n_layer, n_embd, ...) for one test, as main() does from the
    flags. conftest.py puts them back after each test."""
    for name, value in settings.items():
        if name not in microgpt.SETTINGS:
            raise KeyError(f"{name} is not one of microgpt's settings")
        setattr(microgpt, name, value)


def quietly(function, *args):
    """function(*args) with what it prints thrown away (init_params prints 'num params')."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def new_model(docs, seed=0, **shape):
    """microgpt's settings for `shape`, the tokenizer of `docs` and fresh parameters, quietly:
    (uchars, state_dict, params)."""
    configure(**shape)
    random.seed(seed)
    uchars = sorted(set("".join(docs)))
    state_dict, params = quietly(microgpt.init_params, len(uchars) + 1)
    return uchars, state_dict, params


def golden(name, kind):
    """tests/golden/NAME.KIND as bytes: args, out (the reference's stdout) or params."""
    with open(os.path.join(GOLDEN, f"{name}.{kind}"), "rb") as f:
        return f.read()


def golden_args(name):
    return golden(name, "args").decode().split()


def expected_params_hash(name):
    """The sha256 of the reference's trained parameters for golden NAME, on this interpreter's
    family (CPython and PyPy round exp, log and pow differently in the last bit)."""
    lines = golden(name, "params").decode().splitlines()
    return dict(line.split() for line in lines)[FAMILY]


def params_hash(numbers):
    """The sha256 of parameters as the golden .params files define it: every number's repr, in
    parameter order, joined by newlines, in UTF-8."""
    return hashlib.sha256("\n".join(repr(x) for x in numbers).encode("utf-8")).hexdigest()


def saved_params_hash(model_path):
    """params_hash of the parameters in a model file written by --save."""
    with open(model_path, encoding="utf-8") as f:
        state_dict = json.load(f)["state_dict"]
    return params_hash([x for matrix in state_dict.values() for row in matrix for x in row])


def output_lines(data):
    """stdout split after every \\n or \\r, each kept: the step lines end in \\r, not \\n."""
    return re.findall(rb"[^\r\n]*(?:\r|\n|$)", data)[:-1] or [data]


def first_difference(expected, got):
    """Where two outputs first differ, as a line number and the two lines, for a failure."""
    expected_lines, got_lines = output_lines(expected), output_lines(got)
    for i in range(max(len(expected_lines), len(got_lines))):
        e = expected_lines[i] if i < len(expected_lines) else b"(end of output)"
        g = got_lines[i] if i < len(got_lines) else b"(end of output)"
        if e != g:
            return f"line {i + 1}: expected {e!r}, got {g!r}"
    return "no difference"


def copy_of_microgpt(folder, edit=None):
    """A copy of microgpt.py in folder, with edit(source) -> source applied if given, and a copy
    of input.txt beside it. Returns the copy's path."""
    with open(SCRIPT, encoding="utf-8") as f:
        source = f.read()
    if edit is not None:
        edited = edit(source)
        assert edited != source, "the edit changed nothing"
        source = edited
    path = os.path.join(str(folder), "microgpt.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source)
    if not os.path.exists(os.path.join(str(folder), "input.txt")):
        with open(INPUT, "rb") as src, open(os.path.join(str(folder), "input.txt"), "wb") as dst:
            dst.write(src.read())
    return path


U = 2.0 ** -53  # float64's unit roundoff: + and * are off by at most U times their result


def rounding_bound(out):
    """How far rounding can have moved out.data, to first order: every node of the graph as
    written rounds its result once (by at most U for + and *, 2 U for the C library's exp, log
    and pow), and backward has put in each node's grad how much out moves when that node does.
    Needs out.backward() first, on a graph of single operations (the plain code)."""
    bound, seen, stack = 0.0, set(), [out]
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen.add(id(v))
            if v._children:  # a leaf is an input: nothing to round
                bound += 2 * U * abs(v.data * v.grad)
            stack.extend(v._children)
    return bound


# Where a claim holds. Most tests run on any system. A test whose claim needs what only some
# systems give (signals, resource limits, preexec_fn, select() on a pipe, file modes, an errno
# that Windows gives otherwise, /dev/full) carries one of these marks: pytest skips it elsewhere
# and names what it needs, so a run on Windows or macOS says what it did not check.

def needs_posix(what):
    """A mark: the test needs POSIX (Linux, macOS, the BSDs) for what, and is skipped elsewhere
    (Windows)."""
    return pytest.mark.skipif(os.name != "posix", reason=f"needs POSIX: {what}")


def needs_linux(what):
    """A mark: the test needs Linux for what, and is skipped elsewhere."""
    return pytest.mark.skipif(not sys.platform.startswith("linux"), reason=f"needs Linux: {what}")


needs_dev_full = pytest.mark.skipif(
    not os.path.exists("/dev/full"),
    reason="needs /dev/full, a device whose every write fails as on a full disk (Linux has one)")


def printed(data):
    """What a real program printed, from the bytes of its stdout or stderr. Python writes each
    \\n of its standard streams as os.linesep: \\n on POSIX (nothing to undo), \\r\\n on Windows,
    undone here. Exactly: there every \\n comes out as \\r\\n (a \\r printed before a \\n as
    \\r\\r\\n), so each \\r\\n is one \\n printed, and every other \\r is kept."""
    return data if os.linesep == "\n" else data.replace(os.linesep.encode(), b"\n")
