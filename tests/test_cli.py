"""The command line (SPEC section 8) and the module's import (STYLE: no side effects)."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--input", "--seed", "--n-layer", "--n-embd", "--n-head", "--block-size", "--save", "--load", "--prompt",
         "--num-steps", "--learning-rate", "--temperature", "--num-samples"]
HEADER = b"\n--- inference (new, hallucinated names) ---\n"


@pytest.fixture
def workdir(tmp_path):
    """A folder with a copy of the shipped input.txt, so nothing is downloaded."""
    shutil.copy(os.path.join(REPO, "input.txt"), tmp_path / "input.txt")
    return tmp_path


def run(args, cwd):
    result = subprocess.run([sys.executable, os.path.join(REPO, "microgpt.py"), *args],
                            cwd=cwd, capture_output=True, timeout=120)
    assert result.returncode == 0, (
        f"microgpt {' '.join(args)}: exit status expected 0, got {result.returncode}; "
        f"stderr: {result.stderr.decode(errors='replace')}")
    return result.stdout


def samples(stdout):
    """The text after the inference header, one sample line each."""
    assert HEADER in stdout, f"expected the inference header {HEADER!r} in {stdout[-300:]!r}"
    return stdout.split(HEADER, 1)[1].decode().splitlines()


def test_help_exits_0_and_describes_every_flag(tmp_path):
    text = run(["--help"], tmp_path).decode()
    missing = [flag for flag in FLAGS if flag not in text]
    assert not missing, f"--help expected to list {FLAGS}, missing {missing}:\n{text}"


def test_num_samples_sets_how_many_names_are_printed(workdir):
    got = samples(run(["--num-steps", "2", "--num-samples", "3"], workdir))
    labels = [line.split(":")[0] for line in got]
    assert labels == ["sample  1", "sample  2", "sample  3"], (
        f"--num-samples 3: expected 3 sample lines, got {got}")


def test_another_seed_gives_other_samples(workdir):
    args = ["--num-steps", "5", "--num-samples", "10"]
    seed_1 = samples(run(["--seed", "1", *args], workdir))
    seed_2 = samples(run(["--seed", "2", *args], workdir))
    assert seed_1 != seed_2, f"--seed 1 and --seed 2 both printed {seed_1}"


def test_zero_steps_samples_from_the_untrained_model(workdir):
    stdout = run(["--num-steps", "0", "--num-samples", "4"], workdir)
    expected_start = b"num docs: 32257\nvocab size: 27\nnum params: 4192\n" + HEADER
    assert stdout.startswith(expected_start), (
        f"--num-steps 0: output expected to start {expected_start!r}, got {stdout[:200]!r}")
    assert b"step" not in stdout, f"--num-steps 0: expected no step line, got {stdout!r}"
    got = samples(stdout)
    assert [line[:10] for line in got] == [f"sample {i:2d}:" for i in range(1, 5)], (
        f"--num-steps 0 --num-samples 4: expected 4 sample lines, got {got}")


def test_import_prints_nothing_creates_no_file_and_draws_no_random_number(tmp_path):
    check = ("import random\n"
             "random.seed(1)\n"
             "before = random.getstate()\n"
             "import microgpt\n"
             "assert random.getstate() == before, 'import drew from the random stream'\n")
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, f"import failed: {result.stderr.decode(errors='replace')}"
    assert (result.stdout, result.stderr) == (b"", b""), (
        f"import expected to print nothing, got stdout {result.stdout!r}, "
        f"stderr {result.stderr!r}")
    created = os.listdir(tmp_path)
    assert created == [], f"import expected to create no file, got {created}"
