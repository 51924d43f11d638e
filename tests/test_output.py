"""The run prints what the reference prints, byte for byte, and trains the very same parameters,
bit for bit, on every Python, with and without --plain; a model saved by that run samples the same
names again; and the default run prints the blog post's names.

tests/golden/NAME.args holds the flags of a run; NAME.out the exact bytes the reference program
printed for them with the repository's input.txt; NAME.params the sha256 of the reference's
parameters right after training: of the `repr` of every parameter, in parameter order (wte, wpe,
lm_head, then each layer's matrices, row by row), joined by "\\n", in UTF-8. It has a line per
interpreter family: CPython and PyPy round a few library functions (exp, log, pow) differently
in the last bit, so their parameters differ while the printed bytes agree. The 4-decimal losses
and 20 names cannot show a last-bit change; the hash does.

The runs are slow (the default run trains 1,000 steps; --plain runs the algorithm as written, at
the reference's speed), so conftest.py starts them all in the background as the session starts,
and each test collects its own."""
import hashlib
import json
import os
import platform
import re
import sys

import pytest

from conftest import (DEFAULT_ARGS, DEFAULT_RUN_TESTS, HEADER, INPUT, find_pythons, golden,
                      golden_args, run_script, slow_run)

PYTHONS = find_pythons()
THIS_FAMILY = "pypy" if platform.python_implementation() == "PyPy" else "cpython"
OTHER_FAMILY = {"cpython": "pypy", "pypy": "cpython"}[THIS_FAMILY]


def family(label):
    return "pypy" if label == "PyPy" else "cpython"


def python_of(family_name):
    """An interpreter of that family: this one for its own family, else any found."""
    if family_name == THIS_FAMILY:
        return sys.executable
    return next((path for label, path in PYTHONS.items() if path and family(label) == family_name),
                None)


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


def expected_hash(name, family_name):
    hashes = dict(line.split() for line in golden(name, "params").decode().splitlines())
    return hashes[family_name]


def check_run(background, run_name, name, python, family_name, args):
    """The background run `run_name` (NAME's flags, with --save and more): the bytes, then the
    hash of the trained parameters. Returns the model's path and the bytes. With --inspect, the
    bytes are the golden's and then the inspection's."""
    out, err, code, _, workdir = background.result(run_name, python, args)
    assert code == 0, f"{run_name} ({' '.join(args)}): exit status {code}, stderr: {err!r}"
    expected = golden(name, "out")
    if "--inspect" in args:
        assert out.startswith(expected + b"\n--- inspect "), out[len(expected) - 100:][:300]
        out = out[:len(expected)]
    assert out == expected, (
        f"{run_name} ({' '.join(args)}) under {python}: stdout differs from "
        f"tests/golden/{name}.out at {first_difference(expected, out)}")
    model = os.path.join(workdir, "model.json")
    got, want = parameters_hash(model), expected_hash(name, family_name)
    assert got == want, (
        f"{run_name} under {python}: the trained parameters hash to {got}, the reference's "
        f"({family_name}) to {want}: the bytes agree, so some operation rounds differently")
    return model, out


def not_installed(label):
    return (f"{label} is not installed here (looked for python3.N and pypy3 on PATH, and in "
            f"/root/.pyenv/versions)")


# Every interpreter: the short and config goldens, with the Efficiency section (the default)
for _label, _python in PYTHONS.items():
    for _name in ("short", "config"):
        slow_run(f"{_name} {_label}", "test_every_python_prints_the_reference_bytes_and_bits",
                 _python, [*golden_args(_name), "--save", "model.json"])


@pytest.mark.parametrize("label", PYTHONS)
@pytest.mark.parametrize("name", ["short", "config"])
def test_every_python_prints_the_reference_bytes_and_bits(name, label, background):
    if PYTHONS[label] is None:
        pytest.skip(not_installed(label))
    check_run(background, f"{name} {label}", name, PYTHONS[label], family(label),
              [*golden_args(name), "--save", "model.json"])


# --plain: the algorithm part exactly as written, at the reference's speed (4.6 s for short's
# 20 steps, CPython 3.11), so on the short golden only, under this Python and the other family
PLAIN_RUNS = [("short", THIS_FAMILY), ("short", OTHER_FAMILY)]
for _name, _family in PLAIN_RUNS:
    slow_run(f"plain {_name} {_family}", "test_plain_prints_the_same_bytes_and_bits",
             python_of(_family), [*golden_args(_name), "--plain", "--save", "model.json"])


@pytest.mark.parametrize("name, family_name", PLAIN_RUNS)
def test_plain_prints_the_same_bytes_and_bits(name, family_name, background):
    python = python_of(family_name)
    if python is None:
        pytest.skip(not_installed(family_name))
    check_run(background, f"plain {name} {family_name}", name, python, family_name,
              [*golden_args(name), "--plain", "--save", "model.json"])


# The default run: 1,000 steps, once per family
BLOG_NAMES = ("kamon ann karai jaire vialan karia yeran anna areli kaina konna keylen liole "
              "alerin earan lenne kana lara alela anton").split()
for _family in ("cpython", "pypy"):
    slow_run(f"default {_family}", DEFAULT_RUN_TESTS, python_of(_family), DEFAULT_ARGS)


def sample_lines(out):
    return out.split(HEADER.encode(), 1)[1]


@pytest.mark.parametrize("family_name", ["cpython", "pypy"])
def test_the_default_run_prints_the_blog_posts_names(family_name, background, tmp_path):
    python = python_of(family_name)
    if python is None:
        pytest.skip(not_installed(family_name))
    model, out = check_run(background, f"default {family_name}", "default", python, family_name,
                           DEFAULT_ARGS)
    # The golden is the reference's output: on makemore's names, the post's 20 names and loss
    text = out.decode()
    names = re.findall(r"^sample +\d+: (.*)$", text, flags=re.M)
    last_loss = re.findall(r"step 1000 / 1000 \| loss (\d+\.\d{4})\r", text)
    assert names == BLOG_NAMES and last_loss == ["2.6497"], (
        f"samples {names}, last loss {last_loss}; the post: {BLOG_NAMES}, 2.6497")
    # And the saved model samples them again, without training
    loaded = run_script(["--load", model], tmp_path, python=python)
    assert loaded.returncode == 0 and loaded.stdout == HEADER.encode() + sample_lines(out), (
        f"--load printed {loaded.stdout!r} (stderr {loaded.stderr!r}), the saving run "
        f"{sample_lines(out)!r}")


def test_a_saved_model_of_another_shape_samples_the_same_names(tmp_path):
    args = [*golden_args("config"), "--input", INPUT, "--save", "model.json"]
    saving = run_script(args, tmp_path)
    assert saving.returncode == 0, saving.stderr
    loaded = run_script(["--load", "model.json"], tmp_path)
    assert loaded.stdout == HEADER.encode() + sample_lines(golden("config", "out")), (
        loaded.stdout, loaded.stderr)
