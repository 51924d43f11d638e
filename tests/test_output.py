"""The run prints what the reference prints, byte for byte, and trains the very same parameters,
bit for bit, on every Python; a model saved by that run samples the same names again.

tests/golden/NAME.args holds the flags of a run; NAME.out the exact bytes the reference program
printed for them with the repository's input.txt; NAME.params the sha256 of the reference's
parameters right after training: of the `repr` of every parameter, in parameter order (wte, wpe,
lm_head, then each layer's matrices, row by row), joined by "\\n", in UTF-8. It has a line per
interpreter family: CPython and PyPy round a few library functions (exp, log, pow) differently
in the last bit, so their parameters differ while the printed bytes agree. The 4-decimal losses
and 20 names cannot show a last-bit change; the hash does."""
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(REPO, "tests", "golden")
HEADER = b"\n--- inference (new, hallucinated names) ---\n"


def works(python, expected):
    """Whether `python` runs and is the version expected, e.g. "cpython 3.11" or "pypy 3.9"."""
    check = "import platform as p; print(p.python_implementation().lower(), p.python_version())"
    try:
        out = subprocess.run([python, "-c", check], capture_output=True, timeout=30).stdout
    except OSError:
        return False
    return out.decode().startswith(expected + ".")


def find_pythons():
    """{label: path or None}: CPython 3.9 to 3.13 and PyPy, wherever this machine has them."""
    found = {}
    for minor in range(9, 14):
        candidates = sorted(glob.glob(f"/root/.pyenv/versions/3.{minor}.*/bin/python")) + [
            shutil.which(f"python3.{minor}")]
        found[f"CPython 3.{minor}"] = next(
            (c for c in candidates if c and works(c, f"cpython 3.{minor}")), None)
    pypy = shutil.which("pypy3")
    found["PyPy"] = pypy if pypy and works(pypy, "pypy 3") else None
    return found


PYTHONS = find_pythons()
THIS_FAMILY = "pypy" if platform.python_implementation() == "PyPy" else "cpython"


def golden(name, kind):
    with open(os.path.join(GOLDEN, f"{name}.{kind}"), "rb") as f:
        return f.read()


def lines(data):
    """Split after every \\n or \\r, keeping them: the step lines end in \\r, not \\n."""
    return re.findall(rb"[^\r\n]*(?:\r|\n|$)", data)[:-1] or [data]


def first_difference(expected, got):
    exp_lines, got_lines = lines(expected), lines(got)
    for i, (e, g) in enumerate(zip(exp_lines, got_lines)):
        if e != g:
            return f"line {i + 1}: expected {e!r}, got {g!r}"
    i = min(len(exp_lines), len(got_lines))
    e = exp_lines[i] if i < len(exp_lines) else b"(end of output)"
    g = got_lines[i] if i < len(got_lines) else b"(end of output)"
    return f"line {i + 1}: expected {e!r}, got {g!r}"


def parameters_hash(model_path):
    """The sha256 of the saved parameters, computed as the golden .params files say."""
    with open(model_path, encoding="utf-8") as f:
        state_dict = json.load(f)["state_dict"]
    numbers = [x for matrix in state_dict.values() for row in matrix for x in row]
    return hashlib.sha256("\n".join(repr(x) for x in numbers).encode("utf-8")).hexdigest()


def expected_hash(name, family):
    hashes = dict(line.split() for line in golden(name, "params").decode().splitlines())
    return hashes[family]


def run(python, args, cwd, timeout=300):
    result = subprocess.run([python, os.path.join(REPO, "microgpt.py"), *args], cwd=cwd,
                            capture_output=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(args)}: exit status expected 0, got {result.returncode}; "
        f"stderr: {result.stderr.decode(errors='replace')}")
    return result.stdout


def start(name, python, workdir):
    """Start NAME's run with --save in `workdir` (with a copy of input.txt: no download)."""
    shutil.copy(os.path.join(REPO, "input.txt"), os.path.join(workdir, "input.txt"))
    args = [*golden(name, "args").decode().split(), "--save", "model.json"]
    return subprocess.Popen([python, os.path.join(REPO, "microgpt.py"), *args], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def check_run(name, python, family, tmp_path, process=None):
    """NAME's run with --save (started here, or already running): the bytes, then the hash of
    the trained parameters."""
    process = process or start(name, python, tmp_path)
    out, err = process.communicate(timeout=300)
    args = golden(name, "args").decode().split()
    assert process.returncode == 0, (
        f"{name} ({' '.join(args)}): exit status {process.returncode}, stderr: {err!r}")
    expected = golden(name, "out")
    assert out == expected, (
        f"{name} ({' '.join(args)}) under {python}: stdout differs from tests/golden/{name}.out "
        f"at {first_difference(expected, out)}")
    model = os.path.join(tmp_path, "model.json")
    got, want = parameters_hash(model), expected_hash(name, family)
    assert got == want, (
        f"{name} under {python}: the trained parameters hash to {got}, the reference's "
        f"({family}) to {want}: the bytes agree, so some operation rounds differently")
    return model, expected


@pytest.mark.parametrize("label", PYTHONS)
@pytest.mark.parametrize("name", ["short", "config"])
def test_every_python_prints_the_reference_bytes_and_trains_the_same_bits(name, label, tmp_path):
    python = PYTHONS[label]
    if python is None:
        pytest.skip(f"{label} is not installed here (looked for python3.N and pypy3 on PATH, "
                    f"and in /root/.pyenv/versions)")
    check_run(name, python, "pypy" if label == "PyPy" else "cpython", tmp_path)


def sample_lines(out):
    return out.split(HEADER, 1)[1]


# The default run (1,000 steps) is the central proof and the slowest test, so it runs once per
# interpreter family, and conftest.py starts both runs as soon as the tests are collected: they
# train in the background while the other tests run.
def default_python(family):
    if family == THIS_FAMILY:
        return sys.executable
    return PYTHONS["PyPy"] if family == "pypy" else next((p for p in PYTHONS.values() if p), None)


DEFAULT_RUNS = {}  # family (or "blog"): (process, its folder), filled by start_slow_runs


def start_slow_runs(folder):
    for family in ("cpython", "pypy"):
        python = default_python(family)
        if python is not None:
            workdir = os.path.join(folder, family)
            os.makedirs(workdir)
            DEFAULT_RUNS[family] = (start("default", python, workdir), workdir)
    if os.path.exists(NAMES_TXT):
        DEFAULT_RUNS["blog"] = (subprocess.Popen(
            [PYTHONS["PyPy"] or sys.executable, os.path.join(REPO, "microgpt.py"), "--input",
             NAMES_TXT], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE), folder)


@pytest.mark.parametrize("family", ["cpython", "pypy"])
def test_the_default_run_prints_the_reference_bytes_and_its_saved_model_samples_them_again(
        family, tmp_path):
    python = default_python(family)
    if python is None:
        pytest.skip("PyPy (pypy3) is not installed here")
    process, workdir = DEFAULT_RUNS.pop(family, (None, tmp_path))
    model, expected = check_run("default", python, family, workdir, process)
    loaded = run(python, ["--load", str(model)], tmp_path)
    assert loaded == HEADER + sample_lines(expected), (
        f"--load printed {loaded!r}, the saving run {sample_lines(expected)!r}")


def test_a_saved_model_of_another_shape_samples_the_same_names(tmp_path):
    model, expected = check_run("config", sys.executable, THIS_FAMILY, tmp_path)
    loaded = run(sys.executable, ["--load", str(model)], tmp_path)
    assert loaded == HEADER + sample_lines(expected), loaded


# With makemore's names.txt as input, the reference prints the blog post's names and last loss.
# names.txt is not in the repository: the README's "Reproduce the blog post" downloads it into
# the repository's folder, and then this check runs; it is skipped otherwise.
NAMES_TXT = os.path.join(REPO, "names.txt")
BLOG_NAMES = ("kamon ann karai jaire vialan karia yeran anna areli kaina konna keylen liole "
              "alerin earan lenne kana lara alela anton").split()


@pytest.mark.skipif(not os.path.exists(NAMES_TXT),
                    reason="makemore's names.txt is not in the repository's folder (README, "
                           "'Reproduce the blog post', downloads it there)")
def test_makemore_names_give_the_blog_posts_names_and_loss(tmp_path):
    # PyPy when it is here: the same bytes as CPython (above), and faster.
    process, _ = DEFAULT_RUNS.pop("blog", (None, None))
    process = process or subprocess.Popen(
        [PYTHONS["PyPy"] or sys.executable, os.path.join(REPO, "microgpt.py"), "--input",
         NAMES_TXT], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, f"exit {process.returncode}: {err!r}"
    out = out.decode()
    last_loss = re.findall(r"step 1000 / 1000 \| loss (\d+\.\d{4})\r", out)
    names = re.findall(r"^sample +\d+: (.*)$", out, flags=re.M)
    assert last_loss == ["2.6497"], f"last loss: expected ['2.6497'], got {last_loss}"
    assert names == BLOG_NAMES, f"samples: expected {BLOG_NAMES}, got {names}"
