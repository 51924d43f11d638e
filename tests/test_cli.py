"""The command line (README.md's Flags) and the module's import, which has no side effects."""
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

import microgpt  # the real file (conftest.py puts the repository on sys.path)
from conftest import run_main

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


def test_the_seed_drives_the_shuffle_the_first_weights_and_the_samples(workdir, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(workdir)  # the default input.txt
    starts, real_train, real_inference = [], microgpt.train, microgpt.inference

    def recording_train(docs, uchars, state_dict):  # what training starts from
        starts.append((list(docs), [p.data for p in microgpt.parameters(state_dict)]))
        return real_train(docs, uchars, state_dict)

    def recording_inference(uchars, state_dict, prompt=""):  # where sampling starts
        starts[-1] += (random.getstate(),)
        return real_inference(uchars, state_dict, prompt)

    monkeypatch.setattr(microgpt, "train", recording_train)
    monkeypatch.setattr(microgpt, "inference", recording_inference)
    short = ["--num-steps", "2", "--num-samples", "5"]
    runs = {}
    for name, args in [("no --seed", short), ("--seed 42", ["--seed", "42", *short]),
                       ("--seed 7", ["--seed", "7", *short]),
                       ("--seed 7 again", ["--seed", "7", *short])]:
        code, out, err = run_main(capsys, args)
        assert code == 0 and err == "", f"{name}: exit {code}, stderr {err!r}"
        runs[name] = (out, *starts[-1])
    for a, b in [("--seed 42", "no --seed"), ("--seed 7 again", "--seed 7")]:
        assert runs[a][0] == runs[b][0], f"{a} printed {runs[a][0]!r}\n{b} printed {runs[b][0]!r}"

    # One stream, seeded once: the shuffle, then every first weight in init_params' order, then
    # (training draws nothing) the samples
    with open("input.txt", encoding="utf-8") as f:
        names = f.read().split()
    for seed, name in [(42, "no --seed"), (7, "--seed 7")]:
        stream, expected_docs = random.Random(seed), list(names)
        stream.shuffle(expected_docs)
        _, docs, weights, sampling_state = runs[name]
        assert docs == expected_docs, (
            f"{name}: first docs {docs[:5]}, expected seed {seed}'s shuffle {expected_docs[:5]}")
        expected_weights = [stream.gauss(0, 0.08) for _ in weights]
        assert weights == expected_weights, (
            f"{name}: first weights {weights[:3]}, expected seed {seed}'s next Gaussian draws "
            f"{expected_weights[:3]}")
        assert sampling_state == stream.getstate(), (
            f"{name}: sampling does not start where seed {seed}'s stream is after the weights")

    # Another seed: another first document (so another first loss), other weights, other names
    out_42, docs_42, weights_42, _ = runs["no --seed"]
    out_7, docs_7, weights_7, _ = runs["--seed 7"]
    first_42, first_7 = (re.search(r"step    1 / .*?\r", out).group() for out in (out_42, out_7))
    assert docs_42[0] != docs_7[0] and first_42 != first_7, (
        f"seed 42 trains first on {docs_42[0]!r}: {first_42!r}; "
        f"seed 7 on {docs_7[0]!r}: {first_7!r}")
    same = sum(a == b for a, b in zip(weights_42, weights_7))
    assert same == 0, f"{same} of {len(weights_42)} first weights are the same for seeds 42 and 7"
    samples_42, samples_7 = (samples(out.encode()) for out in (out_42, out_7))
    assert samples_42 != samples_7, f"seeds 42 and 7 both sampled {samples_42}"


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
