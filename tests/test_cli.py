"""The command line: the flags, the settings they set, and main() putting them back; and
`import microgpt`, which does nothing but define.

The claims: --help lists every flag, with its default as the file's settings have it; each flag
sets its own setting, of its own type, and nothing else; main() starts from the module's
settings as they are, and puts every one back after a run, whether it ends well or not;
--num-samples, --seed and --num-steps 0 do what they say; importing microgpt prints nothing,
creates no file, draws no random number and leaves the cycle collector on."""
import os
import random
import re
import subprocess
import sys

import pytest

import microgpt
from helpers import HEADER, NAMES, NAMES_TEXT, REPO, run_main, sample_texts, write

SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8"]

FLAG_VALUES = [  # flag, the text it is given, its setting, the value it must set there
    ("--input", "names.txt", "input_path", "names.txt"),
    ("--seed", "8", "seed", 8),
    ("--n-layer", "3", "n_layer", 3),
    ("--n-embd", "8", "n_embd", 8),
    ("--n-head", "2", "n_head", 2),
    ("--block-size", "5", "block_size", 5),
    ("--num-steps", "0", "num_steps", 0),
    ("--learning-rate", "1", "learning_rate", 1.0),  # written as an integer: still a float
    ("--temperature", "2", "temperature", 2.0),
    ("--num-samples", "0", "num_samples", 0),
    ("--held-out", "50", "held_out", 50),
    ("--prompt", "li", "prompt", "li"),
    ("--save", "model.json", "save_path", "model.json"),
    ("--load", "model.json", "load_path", "model.json"),
    ("--inspect", "ava", "inspect_text", "ava"),
    ("--plain", None, "plain", True),
]
# The defaults README's flag table gives; the other flags have none to show
DEFAULTS = {"--input": "input.txt", "--seed": "42", "--n-layer": "1", "--n-embd": "16",
            "--n-head": "4", "--block-size": "16", "--num-steps": "1000",
            "--learning-rate": "0.01", "--temperature": "0.5", "--num-samples": "20",
            "--held-out": "200"}


def module_values():
    """Every plain value microgpt holds at its top level (settings and constants alike)."""
    return {name: (type(value), value) for name, value in vars(microgpt).items()
            if type(value) in (bool, int, float, str) and not name.startswith("__")}


def changes(before, after):
    return {name: (before.get(name), after.get(name)) for name in set(before) | set(after)
            if before.get(name) != after.get(name)}


def help_entries(capsys, monkeypatch):
    """--help in this process: {flag: its help text}, one line each."""
    monkeypatch.setenv("COLUMNS", "300")  # wide enough that argparse puts each flag on a line
    code, out, err = run_main(capsys, ["--help"])
    assert code == 0 and err == "", (code, err)
    assert out.startswith("usage: microgpt "), out
    return dict(re.findall(r"^  (--[a-z-]+)(?: [A-Z]+)? +(.*)$", out, flags=re.M))


def test_help_exits_0_and_lists_every_flag_with_its_default(capsys, monkeypatch):
    entries = help_entries(capsys, monkeypatch)
    assert sorted(entries) == sorted(flag for flag, _, _, _ in FLAG_VALUES), sorted(entries)
    for flag, meaning in entries.items():
        if flag in DEFAULTS:
            assert meaning.endswith(f" (default: {DEFAULTS[flag]})"), (flag, meaning)
        else:
            assert "(default" not in meaning and meaning, (flag, meaning)


def test_help_takes_each_default_from_the_settings_as_they_are(capsys, monkeypatch):
    # Settings changed in the module (by a reader, or by a notebook cell before main()) are the
    # defaults --help shows
    others = {"input_path": "names.txt", "seed": 7, "n_layer": 2, "n_embd": 32, "n_head": 8,
              "block_size": 8, "num_steps": 30, "learning_rate": 0.02, "temperature": 0.8,
              "num_samples": 5, "held_out": 64}
    for setting, value in others.items():
        monkeypatch.setattr(microgpt, setting, value)
    entries = help_entries(capsys, monkeypatch)
    for flag, _, setting, _ in FLAG_VALUES:
        if setting in others:
            assert entries[flag].endswith(f" (default: {others[setting]})"), (flag, entries[flag])


@pytest.mark.parametrize("flag, text, setting, value", FLAG_VALUES,
                         ids=[flag for flag, _, _, _ in FLAG_VALUES])
def test_each_flag_sets_its_own_setting_with_its_own_type_and_nothing_else(
        flag, text, setting, value, capsys, monkeypatch):
    argv = [flag] if text is None else [flag, text]
    given = microgpt.parse_flags(argv)
    typed = {name: (type(v), v) for name, v in given.items()}
    assert typed == {setting: (type(value), value)}, f"{argv} gave {typed}"
    # And main() sets it, and only it, for the run, and puts it back afterwards
    seen = []
    monkeypatch.setattr(microgpt, "run", lambda given: seen.append(module_values()))
    before = module_values()
    code, out, err = run_main(capsys, argv)
    assert code == 0 and out == "" and err == "", (code, out, err)
    assert changes(before, seen[0]) == {setting: (before[setting], (type(value), value))}, (
        f"{argv} changed {changes(before, seen[0])}")
    assert module_values() == before, f"left behind: {changes(before, module_values())}"


def test_main_puts_every_setting_and_function_back_after_a_run(tmp_path, capsys):
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    values = module_values()
    functions = {name: value for name, value in vars(microgpt).items() if callable(value)}
    methods = dict(vars(microgpt.Value))
    argv = ["--input", str(names), "--seed", "3", "--n-layer", "2", *SMALL, "--num-steps", "2",
            "--learning-rate", "0.02", "--temperature", "0.7", "--num-samples", "2",
            "--prompt", "l", "--save", str(tmp_path / "model.json"), "--inspect", "li"]
    code, out, err = run_main(capsys, argv)
    assert code == 0 and out.count("sample ") == 2, (code, out, err)
    assert module_values() == values, f"left behind: {changes(values, module_values())}"
    replaced = [name for name, value in functions.items() if getattr(microgpt, name) is not value]
    replaced += [f"Value.{name}" for name, value in methods.items()
                 if vars(microgpt.Value).get(name) is not value]
    assert not replaced, f"left replaced: {replaced}"


def interrupted(*args):
    raise KeyboardInterrupt


@pytest.mark.parametrize("failure", ["usage", "missing input", "bad prompt after --load",
                                     "blown up", "interrupted"])
def test_main_puts_every_setting_back_after_a_failure(failure, tmp_path, capsys, monkeypatch):
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    model = tmp_path / "model.json"
    assert run_main(capsys, ["--input", str(names), *SMALL, "--num-steps", "1",
                             "--num-samples", "0", "--save", str(model)])[0] == 0
    if failure == "interrupted":
        monkeypatch.setattr(microgpt, "train", interrupted)
    argv, status = {
        "usage": (["--n-embd", "8", "--n-head", "3"], 2),
        "missing input": (["--input", str(tmp_path / "none.txt"), *SMALL], 1),
        # the model file's settings are in place by then: n_embd 8, block_size 8
        "bad prompt after --load": (["--load", str(model), "--prompt", "Z"], 1),
        "blown up": (["--input", str(names), *SMALL, "--num-steps", "3",
                      "--learning-rate", "1e300", "--num-samples", "0"], 1),
        "interrupted": (["--input", str(names), *SMALL, "--num-steps", "5"], 130),
    }[failure]
    values = module_values()
    code, out, err = run_main(capsys, argv)
    assert code == status and "Traceback" not in err, (code, err)
    assert module_values() == values, f"left behind: {changes(values, module_values())}"


def test_main_starts_from_the_settings_as_they_are(tmp_path, capsys, monkeypatch):
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    for setting, value in dict(input_path=str(names), n_embd=12, n_head=3, block_size=8,
                               num_steps=1, num_samples=1).items():
        monkeypatch.setattr(microgpt, setting, value)
    shapes, real_init = [], microgpt.init_params

    def recording_init(vocab_size):
        shapes.append((microgpt.n_embd, microgpt.n_head, microgpt.block_size))
        return real_init(vocab_size)

    monkeypatch.setattr(microgpt, "init_params", recording_init)
    code, out, err = run_main(capsys, ["--n-head", "2"])
    assert code == 0 and shapes == [(12, 2, 8)], (code, shapes, err)
    assert len(sample_texts(out)) == 1 and out.count("\r") == 1, out  # num_samples, num_steps
    # Put back to those values, not to the file's
    assert (microgpt.n_embd, microgpt.n_head, microgpt.input_path) == (12, 3, str(names))
    # The check that --n-head divides --n-embd takes the module's n_embd too (12, not 16)
    code, out, err = run_main(capsys, ["--n-head", "8"])
    assert code == 2 and err.endswith("error: --n-embd must be divisible by --n-head\n"), err


def test_num_samples_is_how_many_names_are_printed(tmp_path, capsys):
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    for count in (3, 0):
        code, out, err = run_main(capsys, ["--input", str(names), *SMALL, "--num-steps", "1",
                                           "--num-samples", str(count)])
        assert code == 0 and len(sample_texts(out)) == count, (count, out, err)
        assert out.endswith(HEADER if count == 0 else "\n"), out


def test_zero_steps_samples_from_the_untrained_model(tmp_path, capsys, monkeypatch):
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    first, real_inference = [], microgpt.inference

    def recording_inference(uchars, BOS, vocab_size, state_dict):
        first.append([p.data for mat in state_dict.values() for row in mat for p in row])
        return real_inference(uchars, BOS, vocab_size, state_dict)

    monkeypatch.setattr(microgpt, "inference", recording_inference)
    code, out, err = run_main(capsys, ["--input", str(names), *SMALL, "--num-steps", "0",
                                       "--num-samples", "4"])
    # No training: no trend and no samples found in the data, only the untrained model's loss
    assert code == 0 and err.startswith("microgpt: mean loss on 16 documents never trained on")
    assert len(err.splitlines()) == 1, (code, err)
    assert out.startswith("num docs: 16\nvocab size: 19\nnum params: 1136\n" + HEADER), out
    assert "step" not in out and len(sample_texts(out)) == 4, out
    # The weights sampled from are the first ones: seed 42's draws after the shuffle
    stream = random.Random(42)
    stream.shuffle(list(NAMES))
    expected = [stream.gauss(0, 0.08) for _ in first[0]]
    assert first[0] == expected, "sampled from weights other than the first ones"


def test_the_seed_drives_the_shuffle_the_first_weights_and_the_samples(tmp_path, capsys,
                                                                        monkeypatch):
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    starts, real_train, real_inference = [], microgpt.train, microgpt.inference

    def recording_train(docs, uchars, BOS, state_dict, params):
        starts.append([list(docs), [p.data for p in params]])  # what training starts from
        return real_train(docs, uchars, BOS, state_dict, params)

    def recording_inference(uchars, BOS, vocab_size, state_dict):
        starts[-1].append(random.getstate())  # where sampling starts
        return real_inference(uchars, BOS, vocab_size, state_dict)

    monkeypatch.setattr(microgpt, "train", recording_train)
    monkeypatch.setattr(microgpt, "inference", recording_inference)
    short = ["--input", str(names), *SMALL, "--num-steps", "2", "--num-samples", "5"]
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
    for seed, name in [(42, "no --seed"), (7, "--seed 7")]:
        stream, expected_docs = random.Random(seed), list(NAMES)
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
    # And so another seed gives other samples
    assert sample_texts(runs["no --seed"][0]) != sample_texts(runs["--seed 7"][0])


def test_import_prints_nothing_creates_no_file_draws_no_random_number(tmp_path):
    check = ("import gc, random\n"
             "random.seed(1)\n"
             "before = random.getstate()\n"
             "import microgpt\n"
             "assert random.getstate() == before, 'import drew from the random numbers'\n"
             "assert gc.isenabled(), 'import switched the cycle collector off'\n")
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, f"import failed: {result.stderr.decode(errors='replace')}"
    assert (result.stdout, result.stderr) == (b"", b""), (result.stdout, result.stderr)
    assert os.listdir(tmp_path) == [], f"import created {os.listdir(tmp_path)}"
