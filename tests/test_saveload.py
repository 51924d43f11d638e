"""--save, --load and --prompt (README: "Save, sample later, prompt").

The claims: a saved model samples later exactly as the saving run did; --seed, --temperature and
--num-samples still apply to a loaded model, while the settings a model fixes do not; a prompt
starts every sample; a bad model file, a bad prompt or a failed save is one line and leaves no
file behind. (That --save leaves the reference's bytes unchanged, and that a saved model holds the
exact trained parameters, is shown on the default and config runs in tests/test_output.py.)"""
import json
import os
import random
import re

import pytest

import microgpt
from conftest import configure, run_main

NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia",
         "liam", "noah", "william", "james", "oliver", "benjamin", "elijah", "lucas"]
SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-steps", "5"]  # ~50 ms




def samples(out):
    return re.findall(r"^sample +\d+: (.*)$", out, flags=re.M)


def one_line(code, out, err, expected_code):
    """The error contract: the exit code, nothing on stdout, one `microgpt:` line on stderr."""
    evidence = f"exit {code}, stdout {out!r}, stderr {err!r}"
    assert code == expected_code and out == "" and "Traceback" not in err, evidence
    assert len(err.splitlines()) == 1 and err.startswith("microgpt: "), evidence
    return err.rstrip("\n")


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


def test_a_loaded_model_prints_the_samples_the_saving_run_printed(saved, capsys):
    path, saving_run = saved
    code, out, err = run_main(capsys, ["--load", path])
    expected = "\n--- inference (new, hallucinated names) ---\n" + saving_run.split("---\n", 1)[1]
    assert code == 0 and out == expected, f"exit {code}, stderr {err!r}\n{out!r}\n!= {expected!r}"
    assert len(samples(out)) == 6, out  # its --num-samples and --temperature came with it


def test_num_samples_seed_and_temperature_still_apply_to_a_loaded_model(saved, capsys):
    path, saving_run = saved
    _, first_three, _ = run_main(capsys, ["--load", path, "--num-samples", "3"])
    assert samples(first_three) == samples(saving_run)[:3], first_three
    # With --seed and --temperature: what inference() prints from the file's numbers, computed
    # here without load_model: the shape and vocabulary from the file, then seed, then sample.
    code, out, err = run_main(capsys, ["--load", path, "--seed", "7", "--temperature", "2"])
    model = json.load(open(path))
    configure(n_embd=8, n_head=2, block_size=8, num_samples=6, temperature=2.0)
    state_dict = microgpt.init_params(len(model["uchars"]) + 1)
    for name, mat in state_dict.items():
        for row, numbers in zip(mat, model["state_dict"][name]):
            for p, x in zip(row, numbers):
                p.data = x
    random.seed(7)
    microgpt.inference(list(model["uchars"]), state_dict)
    expected = capsys.readouterr().out
    assert code == 0 and samples(out) == samples(expected), f"{out!r}\n!= {expected!r}"
    assert samples(out) != samples(saving_run), "--seed 7 changed nothing"


def test_a_prompt_starts_every_sample_trained_or_loaded(names, saved, capsys):
    path, _ = saved
    for argv in (["--input", names, *SMALL, "--num-samples", "8"], ["--load", path]):
        code, out, err = run_main(capsys, [*argv, "--prompt", "li"])
        got = samples(out)
        assert code == 0 and got and all(s.startswith("li") for s in got), (argv, out, err)
        assert all(len(s) <= 8 for s in got), f"longer than block_size 8: {got}"


@pytest.mark.parametrize("prompt", ["emmaliam", "emmaliamnoah"])
def test_a_prompt_that_fills_the_context_is_the_whole_sample(prompt, saved, capsys):
    # block_size is 8: a sample ends at 8 characters, so a prompt of 8 or more leaves no room.
    code, out, err = run_main(capsys, ["--load", saved[0], "--prompt", prompt])
    assert code == 0 and samples(out) == [prompt] * 6, out


@pytest.mark.parametrize("use_load", [False, True], ids=["training", "--load"])
def test_a_prompt_character_outside_the_vocabulary_is_one_line(use_load, names, saved, capsys):
    argv = ["--load", saved[0]] if use_load else ["--input", names, *SMALL]
    code, out, err = run_main(capsys, [*argv, "--prompt", "emZa"])
    evidence = f"exit {code}, stdout {out!r}, stderr {err!r}"
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, evidence
    assert err == ("microgpt: --prompt: 'Z' is not in the vocabulary: "
                   f"{''.join(sorted(set(''.join(NAMES))))!r}\n"), evidence
    assert "step" not in out, f"trained before checking the prompt: {out!r}"


@pytest.mark.parametrize("flag, value", [
    ("--input", "names.txt"), ("--n-layer", "2"), ("--n-embd", "8"), ("--n-head", "2"),
    ("--block-size", "8"), ("--num-steps", "5"), ("--learning-rate", "0.1"),
    ("--save", "again.json")])
def test_a_setting_the_model_fixes_cannot_go_with_load(flag, value, saved, capsys):
    line = one_line(*run_main(capsys, ["--load", saved[0], flag, value]), expected_code=2)
    assert line == f"microgpt: {flag} cannot go with --load: the file fixes the shape, and no training runs", line


def edit(model, change):
    model = json.loads(json.dumps(model))
    change(model)
    return json.dumps(model)


BAD_FILES = {  # name: (how to make it from a good file's text and JSON, what the line says)
    "missing": (None, "no such file or directory"),
    "a directory": ("dir", "is a directory"),
    "not JSON": (lambda text, m: "name,score\nemma,3\n", "Expecting value: line 1 column 1"),
    "not UTF-8": (lambda text, m: b"\xff\xfe{}", "not valid UTF-8 at byte 0"),
    "cut off": (lambda text, m: text[:len(text) // 2], "line "),
    "not a model": (lambda text, m: '{"names": ["emma"]}', "not a microgpt model"),
    "a list": (lambda text, m: "[1, 2, 3]", "not a microgpt model"),
    "a later version": (lambda t, m: edit(m, lambda m: m.update(microgpt=2)),
                        "format version 2, not 1"),
    "no state_dict": (lambda t, m: edit(m, lambda m: m.pop("state_dict")), "no 'state_dict'"),
    "a missing row": (lambda t, m: edit(m, lambda m: m["state_dict"]["wpe"].pop()),
                      "state_dict.wpe is not 8 x 8 finite numbers"),
    "a short row": (lambda t, m: edit(m, lambda m: m["state_dict"]["layer0.mlp_fc2"][3].pop()),
                    "state_dict.layer0.mlp_fc2 is not 8 x 32 finite numbers"),
    "NaN": (lambda t, m: t.replace(repr(m["state_dict"]["wte"][2][5]), "NaN", 1),
            "state_dict.wte is not 19 x 8 finite numbers"),
    "Infinity": (lambda t, m: t.replace(repr(m["state_dict"]["lm_head"][0][0]), "-Infinity", 1),
                 "state_dict.lm_head is not 19 x 8 finite numbers"),
    "a string": (lambda t, m: edit(m, lambda m: m["state_dict"]["wpe"][0].__setitem__(0, "0.1")),
                 "state_dict.wpe is not 8 x 8 finite numbers"),
    "a bad setting": (lambda t, m: edit(m, lambda m: m["settings"].__setitem__(0, "--n-layer=0")),
                      "--n-layer must be a finite number > 0, not 0"),
    "a bad random state": (lambda t, m: edit(m, lambda m: m.__setitem__("random_state", [3])),
                           "not enough values to unpack"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_model_file_is_one_line_saying_what_is_wrong(kind, saved, tmp_path, capsys):
    good, _ = saved
    make, expected = BAD_FILES[kind]
    path = tmp_path / "bad.json"
    if make == "dir":
        path.mkdir()
    elif make is not None:
        text = open(good).read()
        bad = make(text, json.loads(text))
        (path.write_bytes if isinstance(bad, bytes) else path.write_text)(bad)
    line = one_line(*run_main(capsys, ["--load", str(path)]), expected_code=1)
    assert line.startswith(f"microgpt: cannot read {path}: ") and expected in line, line


def test_a_failed_save_leaves_no_file(names, tmp_path, capsys):
    for target in (tmp_path / "no such folder" / "model.json", tmp_path):  # no folder; a folder
        code, out, err = run_main(capsys, ["--input", names, *SMALL, "--save", str(target)])
        assert code == 1 and err.startswith(f"microgpt: cannot write {target}: "), err
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["names.txt"], os.listdir(tmp_path)


def test_an_interrupted_save_keeps_the_earlier_file(names, saved, monkeypatch, capsys):
    path, _ = saved
    before = open(path, "rb").read()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(microgpt.os, "replace", interrupted)
    code, out, err = run_main(capsys, ["--input", names, *SMALL, "--seed", "3", "--save", path])
    assert code == 130 and err == "microgpt: interrupted while saving\n", (code, err)
    assert open(path, "rb").read() == before, "the earlier model file was changed"
    assert sorted(os.listdir(os.path.dirname(path))) == ["model.json", "names.txt"]


def test_the_model_file_is_json_a_person_can_read(saved):
    model = json.load(open(saved[0]))
    assert model["microgpt"] == 1 and model["uchars"] == "".join(sorted(set("".join(NAMES))))
    assert model["settings"] == ["--n-layer=1", "--n-embd=8", "--n-head=2", "--block-size=8",
                                 "--temperature=0.9", "--num-samples=6"], model["settings"]
    assert list(model["state_dict"]) == ["wte", "wpe", "lm_head", "layer0.attn_wq",
                                         "layer0.attn_wk", "layer0.attn_wv", "layer0.attn_wo",
                                         "layer0.mlp_fc1", "layer0.mlp_fc2"]
