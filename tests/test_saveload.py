"""--save, --load and --prompt.

The claims: a saved model is its named fields and nothing else, with every trained weight exact;
saving changes nothing on stdout; a loaded model samples what the saving run sampled, and
--seed, --temperature and --num-samples still apply to it, while the flags a model fixes cannot
go with it; a prompt starts every sample, and a prompt that cannot be is one line before any
training; a bad model file is one line saying what is wrong, and nothing in a file acts as a
flag; a save is whole or nothing, even when the process is killed while it writes. (The claims
that need POSIX carry a mark from helpers, and are skipped elsewhere with the reason.)"""
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import types

import pytest

import microgpt
from helpers import (HEADER, NAMES, NAMES_TEXT, REPO, SCRIPT, assert_one_error_line, configure,
                     needs_posix, quietly, run_main, run_quietly, sample_texts, write)

SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-steps", "5"]
SAMPLING = ["--num-samples", "6", "--temperature", "0.9"]
UCHARS = "".join(sorted(set("".join(NAMES))))  # the 18 letters of helpers.NAMES
MATRICES = ["wte", "wpe", "lm_head", "layer0.attn_wq", "layer0.attn_wk", "layer0.attn_wv",
            "layer0.attn_wo", "layer0.mlp_fc1", "layer0.mlp_fc2"]
SETTINGS = ["n_layer", "n_embd", "n_head", "block_size", "temperature", "num_samples"]



def recording(records, real_inference):
    """A stand-in for microgpt.inference that records, as sampling begins, the weights it
    samples from, the random state and the settings, in records."""
    def recording_inference(uchars, BOS, vocab_size, state_dict):
        records.append(types.SimpleNamespace(
            weights={name: [[p.data for p in row] for row in mat]
                     for name, mat in state_dict.items()},
            random_state=random.getstate(),
            settings={name: getattr(microgpt, name) for name in SETTINGS}))
        return real_inference(uchars, BOS, vocab_size, state_dict)
    return recording_inference


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small model trained on helpers.NAMES and saved, once for this file: its path, the
    saving run's stdout and stderr, the file's text, and what sampling began with in that run
    (weights, random_state, settings)."""
    folder = tmp_path_factory.mktemp("saved")
    names = write(folder / "names.txt", NAMES_TEXT)
    path = folder / "model.json"
    records, real_inference = [], microgpt.inference
    microgpt.inference = recording(records, real_inference)
    try:
        code, out, err = run_quietly(["--input", str(names), *SMALL, *SAMPLING,
                                      "--save", str(path)])
    finally:
        microgpt.inference = real_inference
    assert code == 0 and path.exists(), f"exit {code}, stderr {err!r}"
    (at_sampling,) = records
    return types.SimpleNamespace(path=path, names=names, out=out, err=err,
                                 text=path.read_text(encoding="utf-8"), **vars(at_sampling))


def samples_part(out):
    """What a run printed from the inference header on."""
    assert HEADER in out, out
    return HEADER + out.split(HEADER, 1)[1]


def first_weight_difference(expected, got):
    for name in expected:
        for r, (row_e, row_g) in enumerate(zip(expected[name], got.get(name, []))):
            for c, (e, g) in enumerate(zip(row_e, row_g)):
                if repr(e) != repr(g):
                    return f"{name}[{r}][{c}]: expected {e!r}, got {g!r}"
    return "no single weight differs (a matrix, row or name does)"


# What --save writes

def test_the_model_file_is_exactly_its_named_fields_with_every_weight_exact(saved):
    model = json.loads(saved.text)
    assert list(model) == ["microgpt", "model_args", "sampling", "uchars", "random_state",
                           "state_dict"], list(model)
    typed = {name: (type(value).__name__, value) for name, value in model.items()
             if name in ("microgpt", "uchars")}
    assert typed == {"microgpt": ("int", 2), "uchars": ("str", UCHARS)}, typed
    args = [(name, type(value).__name__, value) for name, value in model["model_args"].items()]
    assert args == [("n_layer", "int", 1), ("n_embd", "int", 8), ("n_head", "int", 2),
                    ("block_size", "int", 8)], args
    sampling = [(name, type(value).__name__, value) for name, value in model["sampling"].items()]
    assert sampling == [("temperature", "float", 0.9), ("num_samples", "int", 6)], sampling
    # The random state is the one sampling began with, as random.getstate() gives it
    version, words, gauss = saved.random_state
    assert model["random_state"] == [version, list(words), gauss], "another random state"
    # Each matrix by name, in init_params' order, row by row, every float as trained (JSON
    # writes a float's repr, which reads back as the same float: so == is the check)
    state_dict = model["state_dict"]
    assert list(state_dict) == MATRICES, list(state_dict)
    assert state_dict == saved.weights, first_weight_difference(saved.weights, state_dict)


def test_saving_changes_nothing_on_stdout(saved, capsys):
    code, out, err = run_main(capsys, ["--input", str(saved.names), *SMALL, *SAMPLING])
    assert code == 0, err
    assert out == saved.out, f"with --save:\n{saved.out!r}\nwithout:\n{out!r}"
    assert err == saved.err, f"with --save: {saved.err!r}\nwithout: {err!r}"


# --load

def test_a_loaded_model_prints_the_samples_the_saving_run_printed(saved, tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)  # a folder with no input file at all
    code, out, err = run_main(capsys, ["--load", str(saved.path)])
    assert code == 0, err
    assert out == samples_part(saved.out), f"loaded:\n{out!r}\nsaving run:\n{saved.out!r}"
    assert len(sample_texts(out)) == 6, "the file's --num-samples 6 did not come with it"
    assert err == "", f"no training, so no report: {err!r}"
    assert os.listdir(tmp_path) == [], f"--load wrote {os.listdir(tmp_path)}"


def expected_samples(saved, seed, temperature, num_samples):
    """What inference() samples from the saved weights, computed here: from the saving run's
    random state (seed None) or from the seed."""
    configure(n_layer=1, n_embd=8, n_head=2, block_size=8, temperature=temperature,
              num_samples=num_samples)
    state_dict = {name: [[microgpt.Value(x) for x in row] for row in mat]
                  for name, mat in saved.weights.items()}
    if seed is None:
        random.setstate(saved.random_state)
    else:
        random.seed(seed)
    uchars = list(UCHARS)
    with microgpt.efficiency():  # as a run samples (the same numbers, faster)
        return quietly(microgpt.inference, uchars, len(uchars), len(uchars) + 1, state_dict)


@pytest.mark.parametrize("flags, seed, temperature, num_samples", [
    (["--num-samples", "3"], None, 0.9, 3),
    (["--temperature", "2"], None, 2.0, 6),
    (["--seed", "7"], 7, 0.9, 6),
    (["--seed", "7", "--temperature", "0.25", "--num-samples", "9"], 7, 0.25, 9),
], ids=["--num-samples", "--temperature", "--seed", "all three"])
def test_seed_temperature_and_num_samples_still_apply_to_a_loaded_model(
        flags, seed, temperature, num_samples, saved, capsys):
    code, out, err = run_main(capsys, ["--load", str(saved.path), *flags])
    assert code == 0, err
    expected = expected_samples(saved, seed, temperature, num_samples)
    got = sample_texts(out)
    assert got == expected, f"{flags}: sampled {got}, expected {expected}"
    if flags == ["--num-samples", "3"]:  # the same stream, cut short
        assert got == sample_texts(saved.out)[:3], (got, sample_texts(saved.out))
    else:
        assert got != sample_texts(saved.out), f"{flags} changed nothing: {got}"


def test_a_loaded_model_runs_with_the_settings_and_types_of_the_saving_run(saved, capsys,
                                                                            monkeypatch):
    records = []
    monkeypatch.setattr(microgpt, "inference", recording(records, microgpt.inference))
    code, out, err = run_main(capsys, ["--load", str(saved.path)])
    assert code == 0, err
    typed = {name: (type(value), value) for name, value in records[0].settings.items()}
    expected = {name: (type(value), value) for name, value in saved.settings.items()}
    assert typed == expected, f"loaded {typed}\nsaving run {expected}"


# --prompt

@pytest.mark.parametrize("loaded", [False, True], ids=["trained", "--load"])
def test_a_prompt_starts_every_sample(loaded, saved, capsys):
    argv = ["--load", str(saved.path)] if loaded else ["--input", str(saved.names), *SMALL]
    code, out, err = run_main(capsys, [*argv, "--num-samples", "8", "--prompt", "li"])
    got = sample_texts(out)
    assert code == 0 and len(got) == 8, (code, out, err)
    assert all(sample.startswith("li") for sample in got), got
    assert all(len(sample) <= 8 for sample in got), f"longer than block_size 8: {got}"
    assert any(len(sample) > 2 for sample in got), f"the prompt alone, every time: {got}"


def test_a_prompt_of_block_size_characters_is_the_whole_sample(saved, capsys):
    code, out, err = run_main(capsys, ["--load", str(saved.path), "--prompt", "emmaliam"])
    assert code == 0 and sample_texts(out) == ["emmaliam"] * 6, (code, out, err)


@pytest.mark.parametrize("prompt", ["emmaliamn", "emZa"], ids=["too long", "unknown letter"])
@pytest.mark.parametrize("loaded", [False, True], ids=["trained", "--load"])
def test_a_prompt_the_model_cannot_take_is_one_line_before_training(prompt, loaded, saved,
                                                                     capsys):
    argv = ["--load", str(saved.path)] if loaded else ["--input", str(saved.names), *SMALL]
    # Training would print num params and the steps first: stdout stops before them
    expected_out = "" if loaded else "num docs: 16\nvocab size: 19\n"
    line = assert_one_error_line(*run_main(capsys, [*argv, "--prompt", prompt]),
                                 expected_out=expected_out)
    if prompt == "emZa":
        assert line == (f"microgpt: --prompt 'emZa': 'Z' is not one of the model's characters, "
                        f"{UCHARS!r}"), line
    else:  # the model's block_size is 8
        assert line == ("microgpt: --prompt 'emmaliamn' has 9 characters, and the model's "
                        "context (--block-size) only 8"), line


# The flags a model fixes

@pytest.mark.parametrize("flag, value", [
    ("--input", "names.txt"), ("--n-layer", "2"), ("--n-embd", "8"), ("--n-head", "2"),
    ("--block-size", "8"), ("--num-steps", "3"), ("--learning-rate", "0.1"),
    ("--save", "other.json"), ("--held-out", "50"),
])
def test_a_flag_the_model_fixes_cannot_go_with_load(flag, value, saved, capsys):
    code, out, err = run_main(capsys, [flag, value, "--load", str(saved.path)])
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("usage: microgpt ") and "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last == (f"microgpt: error: {flag} cannot go with --load, which samples from a trained "
                    f"model"), last


# Bad model files

NOT_A_MODEL = "not a model file of format 2: train and --save it again"
FIELDS = "the fields must be microgpt, model_args, sampling, uchars, random_state, state_dict"
ARGS = ("model_args must be n_layer, n_embd, n_head, block_size: integers above 0, n_embd "
        "divisible by n_head")
SAMPLING_AND_UCHARS = ("sampling (temperature above 0, num_samples) and uchars must be as "
                       "--save writes them")
RANDOM_STATE = "random_state is not a state of Python's random numbers"
WEIGHTS = "state_dict must hold the matrices of model_args's shape, of finite numbers"
FLAG = "--input=/etc/passwd"  # text that would be a flag on the command line


def text(content):
    """A bad file's text, whatever the good file is."""
    return lambda model: content


def edited(change):
    """A bad file: the good file's JSON with change(model) applied."""
    def make(model):
        change(model)
        return json.dumps(model)
    return make


def put(*keys_and_value):
    """A bad file: the good file with model[k1][k2]... set to a value."""
    *keys, value = keys_and_value

    def change(model):
        for key in keys[:-1]:
            model = model[key]
        model[keys[-1]] = value
    return edited(change)


def drop(*keys):
    def change(model):
        for key in keys[:-1]:
            model = model[key]
        del model[keys[-1]]
    return edited(change)


def set_word(index, value):
    return edited(lambda model: model["random_state"][1].__setitem__(index, value))


def set_weight(name, row, col, value):
    return edited(lambda model: model["state_dict"][name][row].__setitem__(col, value))


VERSION_1 = {"microgpt": 1, "settings": ["--n-layer=1"], "uchars": "ab", "state_dict": {},
             "random_state": [3, [0], None]}

BAD_FILES = {  # what is wrong: (how to make it from the good file's JSON, what the line says)
    "missing": (None, "no such file or folder"),
    "a folder": ("folder", "a folder, not a file"),
    "empty": (text(""), NOT_A_MODEL),
    "not JSON": (text("name,score\nemma,3\n"), NOT_A_MODEL),
    "not UTF-8": (text(b"\xff\xfe{}"), NOT_A_MODEL),
    "cut off midway": ("cut", NOT_A_MODEL),
    "nested far too deep": (text("[" * 100000 + "]" * 100000), NOT_A_MODEL),
    "not an object": (text("[1, 2, 3]"), NOT_A_MODEL),
    "format 1, of microgpt 1.x": (text(json.dumps(VERSION_1)), NOT_A_MODEL),
    "version 1": (put("microgpt", 1), NOT_A_MODEL),
    "version '2'": (put("microgpt", "2"), NOT_A_MODEL),
    "version 3": (put("microgpt", 3), NOT_A_MODEL),
    "version true": (put("microgpt", True), NOT_A_MODEL),
    "version as a flag": (put("microgpt", FLAG), NOT_A_MODEL),
    "no version": (drop("microgpt"), NOT_A_MODEL),
    "a missing field": (drop("state_dict"), FIELDS),
    "an unknown field": (put("prompt", "zz"), FIELDS),
    "an unknown field of flags": (put("settings", [FLAG, "--save=x.json"]), FIELDS),
    "model_args a list": (put("model_args", [1, 8, 2, 8]), ARGS),
    "model_args a flag": (put("model_args", "--n-layer=2"), ARGS),
    "model_args missing n_head": (drop("model_args", "n_head"), ARGS),
    "model_args with an unknown field": (put("model_args", "n_ctx", 8), ARGS),
    "n_layer as a string": (put("model_args", "n_layer", "1"), ARGS),
    "n_layer as a flag": (put("model_args", "n_layer", FLAG), ARGS),
    "n_layer true": (put("model_args", "n_layer", True), ARGS),
    "n_layer 1.0": (put("model_args", "n_layer", 1.0), ARGS),
    "n_embd not divisible by n_head": (put("model_args", "n_head", 3), ARGS),
    "block_size 0": (put("model_args", "block_size", 0), ARGS),
    "n_embd negative": (put("model_args", "n_embd", -8), ARGS),
    "n_layer null": (put("model_args", "n_layer", None), ARGS),
    "sampling a flag": (put("sampling", "--temperature=0"), SAMPLING_AND_UCHARS),
    "sampling missing temperature": (drop("sampling", "temperature"), SAMPLING_AND_UCHARS),
    "sampling with a prompt": (put("sampling", "prompt", "zz"), SAMPLING_AND_UCHARS),
    "a temperature of 0": (put("sampling", "temperature", 0.0), SAMPLING_AND_UCHARS),
    "a negative temperature": (put("sampling", "temperature", -0.5), SAMPLING_AND_UCHARS),
    "a temperature that is NaN": (put("sampling", "temperature", float("nan")),
                                  SAMPLING_AND_UCHARS),
    "a temperature as a string": (put("sampling", "temperature", "0.9"), SAMPLING_AND_UCHARS),
    # An integer is not what --save writes (it writes 0.9, 1.0): refused rather than loaded
    # as a setting of another type than --temperature gives
    "a temperature as an integer": (put("sampling", "temperature", 1), SAMPLING_AND_UCHARS),
    "num_samples 6.0": (put("sampling", "num_samples", 6.0), SAMPLING_AND_UCHARS),
    "num_samples true": (put("sampling", "num_samples", True), SAMPLING_AND_UCHARS),
    "num_samples as a flag": (put("sampling", "num_samples", "--num-samples=9"),
                              SAMPLING_AND_UCHARS),
    "uchars empty": (put("uchars", ""), SAMPLING_AND_UCHARS),
    "uchars a list": (put("uchars", list(UCHARS)), SAMPLING_AND_UCHARS),
    "random_state cut short": (put("random_state", [3]), RANDOM_STATE),
    "random_state a flag": (put("random_state", FLAG), RANDOM_STATE),
    "random_state null": (put("random_state", None), RANDOM_STATE),
    "random_state an object": (put("random_state", {"0": 3}), RANDOM_STATE),
    "random_state of 10 words": (edited(lambda m: m["random_state"].__setitem__(
        1, m["random_state"][1][:10])), RANDOM_STATE),
    "random_state past its last word": (set_word(-1, 625), RANDOM_STATE),
    "a random word too large": (set_word(0, 10**400), RANDOM_STATE),
    "random words as strings": (edited(lambda m: m["random_state"].__setitem__(
        1, [str(w) for w in m["random_state"][1]])), RANDOM_STATE),
    "state_dict a list": (put("state_dict", [[0.1]]), WEIGHTS),
    "a missing matrix": (drop("state_dict", "layer0.mlp_fc2"), WEIGHTS),
    "an extra matrix": (put("state_dict", "layer1.attn_wq", [[0.0] * 8] * 8), WEIGHTS),
    "a matrix named as a flag": (put("state_dict", FLAG, [[0.0] * 8]), WEIGHTS),
    "a matrix an object": (put("state_dict", "wpe", {"0": [0.0] * 8}), WEIGHTS),
    "a missing row": (edited(lambda m: m["state_dict"]["wpe"].pop()), WEIGHTS),
    "a short row": (edited(lambda m: m["state_dict"]["layer0.mlp_fc2"][3].pop()), WEIGHTS),
    "a weight as a string": (set_weight("wpe", 0, 0, "0.1"), WEIGHTS),
    "a weight as a flag": (set_weight("lm_head", 2, 5, FLAG), WEIGHTS),
    "a weight null": (set_weight("wte", 1, 1, None), WEIGHTS),
    "a weight too large for a float": (set_weight("wte", 0, 0, 10**400), WEIGHTS),
    "a shape the weights contradict": (put("model_args", "n_embd", 4), WEIGHTS),
    "a vocabulary of another size": (put("uchars", UCHARS[:-1]), WEIGHTS),
    "two layers claimed, one given": (put("model_args", "n_layer", 2), WEIGHTS),
}
# Not among them, so that no test in this process peaks high (see the test of it below)
A_MILLION_LAYERS = put("model_args", "n_layer", 10**6)


def bad_file(make, saved, folder):
    """A bad model file, made by make (see BAD_FILES), in folder: its path."""
    path = folder / "bad.json"
    if make == "folder":
        path.mkdir()
    elif make == "cut":
        write(path, saved.text[:len(saved.text) // 2])
    elif make is not None:
        write(path, make(json.loads(saved.text)))
    return path


# The bad files whose line holds only on POSIX
POSIX_ONLY = {"a folder": needs_posix("a folder opened as a file is EISDIR (Windows refuses it "
                                      "with EACCES, permission denied)")}


@pytest.mark.parametrize("kind", [pytest.param(kind, marks=POSIX_ONLY.get(kind, ()))
                                  for kind in BAD_FILES])
def test_a_bad_model_file_is_one_line_saying_what_is_wrong(kind, saved, tmp_path, capsys):
    path = bad_file(BAD_FILES[kind][0], saved, tmp_path)
    before = sorted(os.listdir(tmp_path))
    line = assert_one_error_line(*run_main(capsys, ["--load", str(path)]))
    assert line == f"microgpt: {path}: {BAD_FILES[kind][1]}", line
    assert sorted(os.listdir(tmp_path)) == before, "a bad model file made a file"


@needs_posix("the peak memory, from resource.getrusage()")
def test_a_file_claiming_a_million_layers_costs_no_memory_to_refuse(saved, tmp_path):
    # Checked against the shapes of the layers it holds, not the million it claims (which, as
    # 6 million names of matrices, would take about a gigabyte). In a fresh interpreter, so
    # that nothing else has raised its peak: the peak memory (ru_maxrss) grows by less than
    # half of what it was once microgpt was imported, the baseline.
    path = bad_file(A_MILLION_LAYERS, saved, tmp_path)
    check = ("import resource, sys\n"
             "import microgpt\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "try:\n"
             "    microgpt.main(['--load', sys.argv[1]])\n"
             "except SystemExit as e:\n"
             "    sys.stderr.write(f'{e.code}\\n')\n"
             "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "print(before, after)\n")
    result = subprocess.run([sys.executable, "-c", check, str(path)], cwd=tmp_path,
                            env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                            timeout=300)
    err = result.stderr.decode("utf-8")
    assert err == f"microgpt: {path}: {WEIGHTS}\n", err
    before, after = map(int, result.stdout.split())
    assert after - before < before / 2, f"peak memory {before} KB before, {after} KB after"


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_a_weight_that_is_not_a_finite_number_is_refused(bad, saved, tmp_path, capsys):
    # NaN and Infinity are floats to Python's json (not to JSON itself): they load as floats,
    # and the check refuses them, as --save never writes them
    model = json.loads(saved.text)
    model["state_dict"]["lm_head"][0][0] = float(bad)
    path = write(tmp_path / f"{bad}.json", json.dumps(model))
    line = assert_one_error_line(*run_main(capsys, ["--load", str(path)]))
    assert line == f"microgpt: {path}: {WEIGHTS}", line


def test_a_vocabulary_that_reads_like_a_flag_is_only_letters(saved, tmp_path, capsys):
    # uchars maps token ids to letters, nothing more: the same weights with another uchars of
    # the same length sample the same tokens, shown as its letters; no flag is acted on
    flag_letters = "--save=pwned1.json"
    assert len(flag_letters) == len(UCHARS)
    model = json.loads(saved.text)
    model["uchars"] = flag_letters
    path = write(tmp_path / "model.json", json.dumps(model))
    code, out, err = run_main(capsys, ["--load", str(path)])
    assert code == 0, err
    table = str.maketrans(UCHARS, flag_letters)
    expected = [sample.translate(table) for sample in sample_texts(saved.out)]
    assert sample_texts(out) == expected, (sample_texts(out), expected)
    assert os.listdir(tmp_path) == ["model.json"], os.listdir(tmp_path)


# A save is whole or nothing

# The exit status Popen.kill() leaves: killed by SIGKILL on POSIX; on Windows, TerminateProcess
# with status 1
KILLED = -signal.SIGKILL if os.name == "posix" else 1


def test_a_save_killed_midway_leaves_the_earlier_file_whole(saved, tmp_path, capsys):
    target = tmp_path / "model.json"
    shutil.copy(saved.path, target)
    earlier = target.read_bytes()

    def fingerprint():
        stat = os.stat(target)
        return stat.st_size, stat.st_mtime_ns, stat.st_ino

    before = fingerprint()
    # A model 128 wide has about 205,000 weights, which json.dump takes about half a second to
    # write: the watch below sees the save begin and kills the process while it writes (a
    # plain write straight onto model.json is then caught half-written)
    run = subprocess.Popen([sys.executable, SCRIPT, "--input", str(saved.names),
                            "--n-embd", "128", "--num-steps", "0", "--num-samples", "0",
                            "--save", str(target)], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = None
    try:
        while seen is None and run.poll() is None:
            parts = [name for name in os.listdir(tmp_path) if name.endswith(".part")]
            if parts:
                seen = f"its part file {parts[0]}"
            elif fingerprint() != before:
                seen = "model.json changing"
            else:
                time.sleep(0.001)
    finally:
        run.kill()  # no clean-up can run
        run.wait()
    assert seen is not None, f"the run ended (status {run.returncode}) before its save was seen"
    assert run.returncode == KILLED, f"saw {seen}, but the run ended {run.returncode}"
    # Whole: the earlier file as it was; or, had the watch been so late (a busy machine) that
    # the kill came after the new file was renamed into place, the new file, which loads
    after = target.read_bytes()
    code, out, err = run_main(capsys, ["--load", str(target)])
    if after != earlier:
        assert code == 0, (f"killed on seeing {seen}: model.json is now {len(after)} bytes "
                           f"({after[:60]!r}...), neither the earlier file nor a whole one: {err}")
    else:
        assert code == 0 and out == samples_part(saved.out), (code, out, err)


def folder_not_to_write_to(tmp_path):
    """A folder in which this process may not make a file (EACCES: permission denied), or None:
    a folder without write permission, unless this process may write anyway (root may), then
    Linux's /sys. (Any other failure, such as no /sys at all, does not count.)"""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    for folder in (locked, "/sys"):
        try:
            open(os.path.join(folder, "probe"), "w").close()
            os.remove(os.path.join(folder, "probe"))
        except OSError as e:
            if e.errno == errno.EACCES:
                return folder
    return None


SAVE_PATHS = {  # where --save points, and what the one line says of it
    "a missing folder": ("no such folder/model.json", "no such file or folder"),
    "a file as its folder": ("names.txt/model.json", "a file where a folder should be"),
    "a folder": ("models", "a folder or a device, not a file"),
    "a device": (os.devnull, "a folder or a device, not a file"),
    "a folder it may not write to": (None, "permission denied"),
}


# The paths whose line holds only on POSIX (the rest hold on Windows too: there os.devnull, nul,
# is a device that exists and is not a file)
POSIX_ONLY_PATHS = {
    "a file as its folder": needs_posix("a file taken for a folder is ENOTDIR (Windows says the "
                                        "path does not exist, ENOENT)"),
    "a folder it may not write to": needs_posix("file modes (chmod 500 takes writing away)"),
}


@pytest.mark.parametrize("where", [pytest.param(where, marks=POSIX_ONLY_PATHS.get(where, ()))
                                   for where in SAVE_PATHS])
def test_a_save_path_that_cannot_take_a_file_is_one_line_before_training(where, tmp_path,
                                                                         capsys):
    """--save is checked before any training: a path in a folder that does not exist, under a
    file, or that is a folder or a device (os.devnull: a save must not replace it), or in a
    folder it may not write to, is one line that names the path as given, with nothing on
    stdout, and nothing is written."""
    path, reason = SAVE_PATHS[where]
    if path is None:
        folder = folder_not_to_write_to(tmp_path)
        if folder is None:
            pytest.skip("no folder here that this process may not write to")
        path = os.path.join(folder, "model.json")
    target = str(tmp_path / path) if where != "a device" else path
    write(tmp_path / "names.txt", NAMES_TEXT)
    (tmp_path / "models").mkdir()
    before = sorted(os.listdir(tmp_path))
    code, out, err = run_main(capsys, ["--input", str(tmp_path / "names.txt"), *SMALL,
                                       *SAMPLING, "--save", target])
    line = assert_one_error_line(code, out, err)
    assert line == f"microgpt: --save {target}: {reason}", line
    assert sorted(os.listdir(tmp_path)) == before, f"left {sorted(os.listdir(tmp_path))}"
    assert os.listdir(tmp_path / "models") == []


@needs_posix("a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored), set in the child by preexec_fn")
def test_a_save_that_fails_midway_is_one_line_and_leaves_no_file(saved, tmp_path):
    """A save whose writes fail midway (here: a file size limit, which makes a write past 2 KB
    fail, as a full disk would) is one line and leaves neither a part file nor model.json; the
    run's stdout holds its training, and no samples (the save comes first)."""
    import resource  # POSIX only, as the mark says

    def limit_file_size():  # in the child: writes past 2 KB fail (EFBIG) instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    shutil.copy(saved.names, tmp_path / "names.txt")
    before = sorted(os.listdir(tmp_path))
    run = subprocess.run([sys.executable, SCRIPT, "--input", "names.txt", *SMALL, *SAMPLING,
                          "--save", "model.json"], cwd=tmp_path, capture_output=True,
                         preexec_fn=limit_file_size, timeout=120)
    out, err = run.stdout.decode("utf-8"), run.stderr.decode("utf-8")
    assert_one_error_line(run.returncode, out, err, expected_out=saved.out.split(HEADER)[0])
    assert sorted(os.listdir(tmp_path)) == before, f"left {sorted(os.listdir(tmp_path))}"


def test_weights_that_blew_up_are_not_saved(saved, tmp_path, capsys):
    # A first step at a learning rate of 1e300 takes weights to about 1e300; the second
    # step's forward pass still works (rmsnorm scales them to 0), and its update leaves NaN
    target = tmp_path / "model.json"
    shutil.copy(saved.path, target)
    code, out, err = run_main(capsys, ["--input", str(saved.names), *SMALL,
                                       "--num-steps", "2", "--learning-rate", "1e300",
                                       "--save", str(target)])
    line = assert_one_error_line(code, out, err, expected_out=out)
    assert HEADER not in out, out
    assert line == ("microgpt: the trained weights are not all numbers: try a smaller "
                    "--learning-rate"), line
    assert target.read_text(encoding="utf-8") == saved.text, "the earlier file was changed"
    assert os.listdir(tmp_path) == ["model.json"], os.listdir(tmp_path)
