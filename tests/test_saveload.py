"""--save, --load and --prompt (README: "Save, sample later, prompt").

The claims: a saved model is data, named fields and nothing else, each checked when loaded; it
samples later exactly as the saving run did; --seed, --temperature and --num-samples still apply
to a loaded model, while the settings a model fixes cannot go with it; a prompt starts every
sample; a bad model file, a bad prompt or a failed save is one line and leaves no file behind,
and two runs saving to one path do not collide. (That --save leaves the reference's bytes
unchanged, and that a saved model holds the exact trained parameters, is shown on the golden
runs in tests/test_output.py.)"""
import json
import os
import random
import subprocess
import sys

import pytest

import microgpt
from conftest import (HEADER, NAMES, SCRIPT, assert_one_error_line, configure, quietly,
                      run_main, sample_texts, split_stderr)

SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-steps", "5"]  # ~50 ms
UCHARS = "".join(sorted(set("".join(NAMES))))


@pytest.fixture
def names(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("".join(f"{name}\n" for name in NAMES))
    return str(path)


@pytest.fixture
def saved(names, tmp_path, capsys):
    """A small model trained on `names` and saved: (path, what the saving run printed)."""
    path = str(tmp_path / "model.json")
    code, out, err = run_main(capsys, ["--input", names, *SMALL, "--num-samples", "6",
                                       "--temperature", "0.9", "--save", path])
    assert code == 0 and os.path.exists(path), f"exit {code}, stderr {err!r}"
    return path, out


def test_saving_changes_nothing_on_stdout(names, saved, capsys):
    _, saving_run = saved
    code, plain_run, err = run_main(capsys, ["--input", names, *SMALL, "--num-samples", "6",
                                             "--temperature", "0.9"])
    assert code == 0 and plain_run == saving_run, (
        f"with --save:\n{saving_run!r}\nwithout:\n{plain_run!r}")


def test_the_model_file_is_named_fields_a_person_can_read(saved):
    with open(saved[0], encoding="utf-8") as f:
        model = json.load(f)
    assert list(model) == ["microgpt", "model_args", "sampling", "uchars", "random_state",
                           "state_dict"], list(model)
    assert model["microgpt"] == 2
    assert model["model_args"] == {"n_layer": 1, "n_embd": 8, "n_head": 2, "block_size": 8}
    assert model["sampling"] == {"temperature": 0.9, "num_samples": 6}
    assert model["uchars"] == UCHARS
    assert list(model["state_dict"]) == ["wte", "wpe", "lm_head", "layer0.attn_wq",
                                         "layer0.attn_wk", "layer0.attn_wv", "layer0.attn_wo",
                                         "layer0.mlp_fc1", "layer0.mlp_fc2"]


def test_a_loaded_model_prints_the_samples_the_saving_run_printed(saved, capsys):
    path, saving_run = saved
    code, out, err = run_main(capsys, ["--load", path])
    expected = HEADER + saving_run.split(HEADER, 1)[1]
    assert code == 0 and out == expected, f"exit {code}, stderr {err!r}\n{out!r}\n!= {expected!r}"
    assert len(sample_texts(out)) == 6, out  # its --num-samples and --temperature came with it
    assert err == "", f"a loaded model has no training and no data to report on: {err!r}"


def test_num_samples_seed_and_temperature_still_apply_to_a_loaded_model(saved, capsys):
    path, saving_run = saved
    _, first_three, _ = run_main(capsys, ["--load", path, "--num-samples", "3"])
    assert sample_texts(first_three) == sample_texts(saving_run)[:3], first_three
    # With --seed and --temperature: what inference() prints from the file's numbers, computed
    # here without the loading code: the shape and vocabulary from the file, then seed, sample.
    code, out, err = run_main(capsys, ["--load", path, "--seed", "7", "--temperature", "2"])
    with open(path, encoding="utf-8") as f:
        model = json.load(f)
    configure(n_embd=8, n_head=2, block_size=8, num_samples=6, temperature=2.0)
    state_dict = {name: [[microgpt.Value(x) for x in row] for row in mat]
                  for name, mat in model["state_dict"].items()}
    random.seed(7)
    uchars = list(model["uchars"])
    microgpt.inference(uchars, len(uchars), len(uchars) + 1, state_dict, [])
    expected = capsys.readouterr().out
    assert code == 0 and sample_texts(out) == sample_texts(expected), f"{out!r}\n!= {expected!r}"
    assert sample_texts(out) != sample_texts(saving_run), "--seed 7 changed nothing"


def test_a_prompt_starts_every_sample_trained_or_loaded(names, saved, capsys):
    path, _ = saved
    for argv in (["--input", names, *SMALL, "--num-samples", "8"], ["--load", path]):
        code, out, err = run_main(capsys, [*argv, "--prompt", "li"])
        got = sample_texts(out)
        assert code == 0 and got and all(s.startswith("li") for s in got), (argv, out, err)
        assert all(len(s) <= 8 for s in got), f"longer than block_size 8: {got}"


def test_a_prompt_that_fills_the_context_is_the_whole_sample(saved, capsys):
    # block_size is 8: a sample ends at 8 characters, so a prompt of 8 leaves no room
    code, out, err = run_main(capsys, ["--load", saved[0], "--prompt", "emmaliam"])
    assert code == 0 and sample_texts(out) == ["emmaliam"] * 6, out


def test_a_prompt_longer_than_the_context_is_one_line(saved, capsys):
    line = assert_one_error_line(*run_main(capsys, ["--load", saved[0], "--prompt",
                                                    "emmaliamnoah"]), expected_code=2)
    assert line == ("microgpt: --prompt: 12 characters do not fit in the model's context of 8 "
                    "(--block-size)"), line


@pytest.mark.parametrize("use_load", [False, True], ids=["training", "--load"])
def test_a_prompt_character_outside_the_vocabulary_is_one_line(use_load, names, saved, capsys):
    argv = ["--load", saved[0]] if use_load else ["--input", names, *SMALL]
    code, out, err = run_main(capsys, [*argv, "--prompt", "emZa"])
    expected_out = "" if use_load else "num docs: 16\nvocab size: 19\n"
    line = assert_one_error_line(code, out, err, expected_code=2, expected_out=expected_out)
    assert line == f"microgpt: --prompt: 'Z' is not in the vocabulary: {UCHARS!r}", line


@pytest.mark.parametrize("flag", [f for f in microgpt.FLAGS if f.role in ("shape", "training")],
                         ids=lambda flag: flag.name)
def test_a_setting_the_model_fixes_cannot_go_with_load(flag, saved, capsys):
    value = {int: "2", float: "0.1", str: "other.json"}[flag.type]
    line = assert_one_error_line(*run_main(capsys, ["--load", saved[0], flag.name, value]),
                                 expected_code=2)
    why = {"shape": "the model file fixes the shape",
           "training": "no training runs with --load"}[flag.role]
    assert line == f"microgpt: {flag.name} cannot go with --load: {why}", line


def test_the_flags_a_model_keeps_are_its_shape_and_sampling():
    roles = {flag.name: flag.role for flag in microgpt.FLAGS}
    kept = sorted(name for name, role in roles.items() if role in ("shape", "sampling"))
    assert kept == ["--block-size", "--n-embd", "--n-head", "--n-layer", "--num-samples",
                    "--temperature"], kept


def edit(change):
    """A function that makes a bad file's JSON from the good file's."""
    def make(text, model):
        model = json.loads(text)
        change(model)
        return json.dumps(model)
    return make


def put(*path_and_value):
    """edit(): set model[k1][k2]... to a value."""
    *keys, value = path_and_value

    def change(model):
        for key in keys[:-1]:
            model = model[key]
        model[keys[-1]] = value
    return edit(change)


def drop(*keys):
    def change(model):
        for key in keys[:-1]:
            model = model[key]
        del model[keys[-1]]
    return edit(change)


V1 = {"microgpt": 1, "settings": ["--n-layer=1"], "uchars": "ab", "state_dict": {},
      "random_state": [3, [0], None]}

BAD_FILES = {  # name: (how to make it from a good file's text and JSON, what the line says)
    "missing": (None, "no such file or directory"),
    "a directory": ("dir", "is a directory"),
    "not JSON": (lambda text, m: "name,score\nemma,3\n", "Expecting value: line 1 column 1"),
    "not UTF-8": (lambda text, m: b"\xff\xfe{}", "not valid UTF-8 at byte 0"),
    "cut off": (lambda text, m: text[:len(text) // 2], "line "),
    "not a model": (lambda text, m: '{"names": ["emma"]}', "not a microgpt model"),
    "a list": (lambda text, m: "[1, 2, 3]", "not a microgpt model"),
    "the old format": (lambda text, m: json.dumps(V1),
                       "a model in the old format of microgpt 1.x: train and --save it again"),
    "a later version": (put("microgpt", 3), "format version 3, not 2"),
    "a missing field": (drop("state_dict"), "the model has no field 'state_dict'"),
    "an injected flag": (put("settings", ["--prompt=zz"]),
                         "the model has an unknown field 'settings'"),
    "an injected --help": (put("settings", ["--help"]),
                           "the model has an unknown field 'settings'"),
    "an injected prompt": (put("sampling", "prompt", "zz"),
                           "sampling has an unknown field 'prompt'"),
    "a missing shape": (drop("model_args", "n_head"), "model_args has no field 'n_head'"),
    "a shape as text": (put("model_args", "n_layer", "1"),
                        "model_args.n_layer must be an integer > 0, not '1'"),
    "a shape of true": (put("model_args", "n_layer", True),
                        "model_args.n_layer must be an integer > 0, not True"),
    "a zero shape": (put("model_args", "block_size", 0),
                     "model_args.block_size must be an integer > 0, not 0"),
    "heads that do not divide": (put("model_args", "n_head", 3),
                                 "model_args.n_embd (8) is not divisible by model_args.n_head (3)"),
    "a shape the weights contradict": (put("model_args", "n_embd", 4),
                                       "state_dict.wte is not 19 x 4 finite numbers"),
    "a temperature of 0": (put("sampling", "temperature", 0),
                           "sampling.temperature must be a number > 0, not 0"),
    "a count as a float": (put("sampling", "num_samples", 2.0),
                           "sampling.num_samples must be an integer >= 0, not 2.0"),
    "a vocabulary out of order": (put("uchars", UCHARS[::-1]),
                                  "uchars must be the vocabulary's characters, each once"),
    "a vocabulary of another size": (put("uchars", UCHARS[:-1]),
                                     "state_dict.wte is not 18 x 8 finite numbers"),
    "a missing matrix": (drop("state_dict", "layer0.mlp_fc2"),
                         "state_dict has no field 'layer0.mlp_fc2'"),
    "an extra matrix": (put("state_dict", "layer1.attn_wq", [[0.0] * 8] * 8),
                        "state_dict has an unknown field 'layer1.attn_wq'"),
    "a missing row": (edit(lambda m: m["state_dict"]["wpe"].pop()),
                      "state_dict.wpe is not 8 x 8 finite numbers"),
    "a short row": (edit(lambda m: m["state_dict"]["layer0.mlp_fc2"][3].pop()),
                    "state_dict.layer0.mlp_fc2 is not 8 x 32 finite numbers"),
    "NaN": (lambda t, m: t.replace(repr(m["state_dict"]["wte"][2][5]), "NaN", 1),
            "state_dict.wte is not 19 x 8 finite numbers"),
    "Infinity": (lambda t, m: t.replace(repr(m["state_dict"]["lm_head"][0][0]), "-Infinity", 1),
                 "state_dict.lm_head is not 19 x 8 finite numbers"),
    "a string": (edit(lambda m: m["state_dict"]["wpe"][0].__setitem__(0, "0.1")),
                 "state_dict.wpe is not 8 x 8 finite numbers"),
    "a short random state": (put("random_state", [3]),
                             "random_state is not a state of Python's random module"),
    "a random state out of range": (edit(lambda m: m["random_state"][1].__setitem__(-1, 625)),
                                    "random_state is not a state of Python's random module"),
    "a negative word in the random state": (
        edit(lambda m: m["random_state"][1].__setitem__(0, -1)),
        "random_state is not a state of Python's random module"),
    "a huge gauss in the random state": (put("random_state", 2, 10**400),
                                         "random_state is not a state of Python's random module"),
    "a version of true": (put("microgpt", True), "format version True, not 2"),
    "a version of 2.0": (put("microgpt", 2.0), "format version 2.0, not 2"),
    "a weight too large for a float": (edit(lambda m: m["state_dict"]["wte"][0].__setitem__(
        0, 10**400)), "state_dict.wte is not 19 x 8 finite numbers"),
    "a temperature too large for a float": (put("sampling", "temperature", 10**400),
                                            "sampling.temperature must be a number > 0, not 1000"),
    "JSON nested too deep": (lambda t, m: "[" * 100000 + "]" * 100000,
                             "not a microgpt model (nested too deep)"),
    "ten million layers": (put("model_args", "n_layer", 10**7),
                           "state_dict has no field 'layer1.attn_wq'"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_model_file_is_one_line_saying_what_is_wrong(kind, saved, tmp_path, capsys):
    good, _ = saved
    make, expected = BAD_FILES[kind]
    path = tmp_path / "bad.json"
    if make == "dir":
        path.mkdir()
    elif make is not None:
        with open(good, encoding="utf-8") as f:
            text = f.read()
        bad = make(text, json.loads(text))
        (path.write_bytes if isinstance(bad, bytes) else path.write_text)(bad)
    line = assert_one_error_line(*run_main(capsys, ["--load", str(path)]))
    assert line.startswith(f"microgpt: cannot read {path}: ") and expected in line, line


def test_a_loaded_model_keeps_each_settings_type(saved):
    # "temperature": 1 in a file is the float 1.0, the type --temperature gives
    with open(saved[0], encoding="utf-8") as f:
        model = json.load(f)
    model["sampling"]["temperature"] = 1
    settings = microgpt.check_model(model)["settings"]
    assert type(settings["temperature"]) is float and settings["temperature"] == 1.0


def test_the_shapes_a_file_is_checked_against_are_those_init_params_makes():
    for shape in ({}, dict(n_layer=3, n_embd=8, n_head=2, block_size=5)):
        configure(**shape)
        random.seed(0)
        state_dict, _ = quietly(microgpt.init_params, 11)
        made = {name: (len(mat), len(mat[0])) for name, mat in state_dict.items()}
        args = {name: getattr(microgpt, name) for name in microgpt.SHAPE}
        assert microgpt.matrix_shapes(args, 11, len(made)) == made


def test_a_loaded_model_with_blown_up_weights_says_so(saved, tmp_path, capsys):
    with open(saved[0], encoding="utf-8") as f:
        model = json.load(f)
    model["state_dict"]["lm_head"] = [[1e308] * 8 for _ in model["state_dict"]["lm_head"]]
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(model))
    line = assert_one_error_line(*run_main(capsys, ["--load", str(path)]), expected_out=HEADER)
    assert line == ("microgpt: numbers out of range during sampling (the logits are not finite): "
                    "the model's weights are too large to use"), line


def test_a_model_saved_under_one_python_loads_under_another(saved, tmp_path):
    # The file is plain JSON: the random state and every float read back the same elsewhere
    path, saving_run = saved
    result = subprocess.run([sys.executable, SCRIPT, "--load", path], cwd=tmp_path,
                            capture_output=True, timeout=60)
    assert result.stdout.decode() == HEADER + saving_run.split(HEADER, 1)[1], result


def test_a_failed_save_leaves_no_file(names, tmp_path, capsys):
    for target in (tmp_path / "no such folder" / "model.json", tmp_path):  # no folder; a folder
        code, out, err = run_main(capsys, ["--input", names, *SMALL, "--save", str(target)])
        errors = split_stderr(err)[1]
        assert code == 1 and len(errors) == 1, err
        assert errors[0].startswith(f"microgpt: cannot write {target}: "), err
    assert sorted(os.listdir(tmp_path)) == ["names.txt"], os.listdir(tmp_path)


def test_an_interrupted_save_keeps_the_earlier_file(names, saved, monkeypatch, capsys):
    path, _ = saved
    with open(path, "rb") as f:
        before = f.read()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(microgpt.os, "replace", interrupted)
    code, out, err = run_main(capsys, ["--input", names, *SMALL, "--seed", "3", "--save", path])
    assert code == 130 and split_stderr(err)[1] == ["microgpt: interrupted while saving"], err
    with open(path, "rb") as f:
        assert f.read() == before, "the earlier model file was changed"
    assert sorted(os.listdir(os.path.dirname(path))) == ["model.json", "names.txt"]


def test_a_failed_save_removes_only_its_own_unfinished_file(names, tmp_path, monkeypatch, capsys):
    # Another run is writing the same path right now: its unfinished file has its own name
    target = tmp_path / "model.json"
    other = tmp_path / "model.json.99999999.part"
    other.write_text("another run's half-written model")

    def failing_replace(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(microgpt.os, "replace", failing_replace)
    code, out, err = run_main(capsys, ["--input", names, *SMALL, "--save", str(target)])
    assert code == 1 and split_stderr(err)[1] == [
        f"microgpt: cannot write {target}: no space left on device"], err
    assert sorted(os.listdir(tmp_path)) == ["model.json.99999999.part", "names.txt"]


def test_a_saved_file_gets_the_mode_a_new_file_gets(saved):
    # Written to a private temporary file first, it still ends with the umask's usual mode
    umask = os.umask(0)
    os.umask(umask)
    mode = os.stat(saved[0]).st_mode & 0o777
    assert mode == 0o666 & ~umask, f"mode {oct(mode)}, umask {oct(umask)}"


def test_two_runs_saving_to_one_path_do_not_collide(names, tmp_path):
    # Both write at once; each renames a complete file of its own into place, so the file at
    # the end is one of the two models, whole, and nothing unfinished is left behind.
    target = str(tmp_path / "model.json")
    runs = [subprocess.Popen([sys.executable, SCRIPT, "--input", names, *SMALL,
                              "--seed", str(seed), "--save", target, "--num-samples", "0"],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for seed in (1, 2)]
    for run in runs:
        _, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
    assert sorted(os.listdir(tmp_path)) == ["model.json", "names.txt"], os.listdir(tmp_path)
    with open(target, encoding="utf-8") as f:
        model = json.load(f)
    assert model["microgpt"] == 2 and len(model["state_dict"]["wte"]) == len(UCHARS) + 1


def test_blown_up_weights_are_not_saved(names, tmp_path, capsys):
    # One step at a learning rate of 1e300 ends with weights of ~1e300; two with inf and nan
    target = tmp_path / "model.json"
    code, out, err = run_main(capsys, ["--input", names, *SMALL, "--num-steps", "2",
                                       "--learning-rate", "1e300", "--save", str(target)])
    assert code == 1 and split_stderr(err)[1] == [
        f"microgpt: cannot save {target}: the weights are not all finite numbers: try a "
        f"smaller --learning-rate"], err
    assert not target.exists()
