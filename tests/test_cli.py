"""The command line (README.md's Flags) and the settings it sets, and the module's import, which
has no side effects."""
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

import microgpt  # the real file (conftest.py puts the repository on sys.path)
from conftest import HEADER, INPUT, NAMES_TEXT, REPO, run_main, run_script, sample_texts, write


@pytest.fixture
def workdir(tmp_path):
    """A folder with a copy of the shipped input.txt, so nothing is downloaded."""
    shutil.copy(INPUT, tmp_path / "input.txt")
    return tmp_path


def run(args, cwd):
    result = run_script(args, cwd)
    assert result.returncode == 0, (
        f"microgpt {' '.join(args)}: exit status expected 0, got {result.returncode}; "
        f"stderr: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


def test_help_exits_0_and_describes_every_flag(tmp_path):
    text = run(["--help"], tmp_path)
    missing = [flag.name for flag in microgpt.FLAGS if flag.name not in text]
    assert not missing, f"--help is missing {missing}:\n{text}"


def test_every_flag_sets_its_setting_with_its_own_type(monkeypatch):
    # The type comes from the flag, not from the default: with a default seed of 0, --seed 8 is
    # still the integer 8 (a string '8' would seed another random stream).
    monkeypatch.setitem(microgpt.DEFAULTS, "seed", 0)
    values = {int: "8", float: "0.25", str: "abc"}
    for flag in microgpt.FLAGS:
        argv = [flag.name] if flag.type is bool else [flag.name, values[flag.type]]
        given = microgpt.parse_flags(argv)
        assert list(given) == [flag.setting], f"{argv} set {given}"
        value = given[flag.setting]
        assert type(value) is flag.type, f"{argv} gave {value!r}, not a {flag.type.__name__}"
        assert flag.setting in microgpt.DEFAULTS and hasattr(microgpt, flag.setting), flag


def test_every_setting_is_written_in_the_file_before_any_flag_sets_it():
    # Every setting a flag sets is a name the file defines, with the default the flag shows,
    # and of the flag's type
    for flag in microgpt.FLAGS:
        default = microgpt.DEFAULTS[flag.setting]
        assert type(default) is flag.type, f"{flag.name}: default {default!r}"
        assert getattr(microgpt, flag.setting) == default
    with pytest.raises(KeyError):
        microgpt.use_settings({"n_embed": 32})  # a misspelt name changes nothing silently


def test_each_run_starts_from_the_files_settings_and_puts_them_back(workdir, monkeypatch,
                                                                      capsys):
    # main() sets every setting, from the file's values and the flags given, and puts them all
    # back when it ends: nothing is left over from an earlier run in the same process.
    monkeypatch.chdir(workdir)
    seen, real_init = [], microgpt.init_params

    def recording_init(vocab_size):
        seen.append((microgpt.n_embd, microgpt.n_head))
        return real_init(vocab_size)

    monkeypatch.setattr(microgpt, "init_params", recording_init)
    code, out, err = run_main(capsys, ["--n-embd", "12", "--n-head", "3", "--num-steps", "1",
                                       "--num-samples", "1"])
    assert code == 0 and seen == [(12, 3)], (code, out, err)
    assert (microgpt.n_embd, microgpt.n_head) == (16, 4), "the run left its settings behind"
    # --n-head 8 goes with the file's --n-embd 16, not with the last run's 12
    code, out, err = run_main(capsys, ["--n-head", "8", "--num-steps", "1", "--num-samples", "1"])
    assert code == 0 and seen[-1] == (16, 8), (code, err)


def test_num_samples_sets_how_many_names_are_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "input.txt", NAMES_TEXT)
    got = sample_texts(run_main(capsys, ["--num-steps", "2", "--num-samples", "3"])[1])
    assert len(got) == 3, f"--num-samples 3: expected 3 sample lines, got {got}"


def test_the_seed_drives_the_shuffle_the_first_weights_and_the_samples(tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "input.txt", NAMES_TEXT)  # a short input.txt: the claim is the same
    starts, real_train, real_inference = [], microgpt.train, microgpt.inference

    def recording_train(docs, uchars, BOS, state_dict, params, step_losses):
        starts.append((list(docs), [p.data for p in params]))  # what training starts from
        return real_train(docs, uchars, BOS, state_dict, params, step_losses)

    def recording_inference(uchars, BOS, vocab_size, state_dict, samples):
        starts[-1] += (random.getstate(),)  # where sampling starts
        return real_inference(uchars, BOS, vocab_size, state_dict, samples)

    monkeypatch.setattr(microgpt, "train", recording_train)
    monkeypatch.setattr(microgpt, "inference", recording_inference)
    short = ["--num-steps", "2", "--num-samples", "5"]
    runs = {}
    for name, args in [("no --seed", short), ("--seed 42", ["--seed", "42", *short]),
                       ("--seed 7", ["--seed", "7", *short]),
                       ("--seed 7 again", ["--seed", "7", *short])]:
        code, out, err = run_main(capsys, args)
        assert code == 0, f"{name}: exit {code}, stderr {err!r}"
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
    assert sample_texts(out_42) != sample_texts(out_7), "seeds 42 and 7 both sampled the same"


def test_zero_steps_samples_from_the_untrained_model(workdir):
    stdout = run(["--num-steps", "0", "--num-samples", "4"], workdir)
    expected_start = "num docs: 32033\nvocab size: 27\nnum params: 4192\n" + HEADER
    assert stdout.startswith(expected_start), (
        f"--num-steps 0: output expected to start {expected_start!r}, got {stdout[:200]!r}")
    assert "step" not in stdout, f"--num-steps 0: expected no step line, got {stdout!r}"
    assert len(sample_texts(stdout)) == 4, stdout


def test_import_prints_nothing_creates_no_file_and_draws_no_random_number(tmp_path):
    check = ("import gc, random\n"
             "random.seed(1)\n"
             "before = random.getstate()\n"
             "import microgpt\n"
             "assert random.getstate() == before, 'import drew from the random stream'\n"
             "assert gc.isenabled(), 'import switched the cycle collector off'\n")
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, f"import failed: {result.stderr.decode(errors='replace')}"
    assert (result.stdout, result.stderr) == (b"", b""), (
        f"import expected to print nothing, got stdout {result.stdout!r}, "
        f"stderr {result.stderr!r}")
    created = os.listdir(tmp_path)
    assert created == [], f"import expected to create no file, got {created}"
