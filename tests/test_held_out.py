"""The held-out loss: after training, standard error gives the mean loss on documents the run
never trained on, the last --held-out of the shuffled list, beside the same mean on as many that
it trained on, the last ones it saw.

The claims: the two means are the loss train() computes, averaged over exactly those documents
(an independent forward pass on the saved model gives them); the held-out documents are the same
whatever --num-steps is; the figure costs nothing else: standard output, the samples and the
trained bits are the same without it (--held-out 0, which turns it off); when training reaches
them, the line says so instead; --plain and an edited file compute the same figure."""
import random
import re

import pytest

import microgpt
from helpers import (INPUT, NAMES, NAMES_TEXT, configure, copy_of_microgpt, doc_loss, encode,
                     printed, run_main, run_script, write)

SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-samples", "3"]
LINE = re.compile(r"^microgpt: mean loss on (\d+) documents never trained on \(the list's "
                  r"last\): (\d\.\d{4})(?:; on the (\d+) it trained on last: (\d\.\d{4}))?$",
                  flags=re.M)


def held_out_line(err):
    """(held-out count, its mean, trained count, its mean) from a run's stderr, as written."""
    match = LINE.search(err)
    assert match, f"no held-out line in {err!r}"
    return match.groups()


def shuffled(path, seed=42):
    """The documents of path in the order a run with this seed trains on them."""
    with open(path, encoding="utf-8-sig") as f:
        docs = [line.strip() for line in f if line.strip()]
    random.Random(seed).shuffle(docs)
    return docs


def mean_loss(docs, model_path):
    """The mean over docs of each document's loss, computed independently of the program's own
    report: helpers.doc_loss on the weights of a saved model (with the Efficiency section's fused
    graph, which tests/test_efficiency.py shows gives the plain code's numbers, bit for bit)."""
    settings, uchars, state_dict = microgpt.load_model(str(model_path))
    configure(**{name: settings[name] for name in microgpt.SHAPE})  # (put back after the test)
    with microgpt.efficiency():
        return sum(doc_loss(encode(doc, uchars), state_dict).data for doc in docs) / len(docs)


@pytest.mark.parametrize("steps", [30, 60])
def test_the_means_are_the_loss_of_the_named_documents_the_same_at_any_step_count(
        steps, tmp_path):
    """At 30 and at 60 steps, the held-out mean is that of the same 50 documents, the last of
    the shuffled input.txt, and the other is that of the documents training took last (at 60
    steps, the last 50 of the 60)."""
    run = run_script(["--input", INPUT, *SMALL, "--num-steps", str(steps), "--held-out", "50",
                      "--save", "m.json"], cwd=tmp_path)
    err = printed(run.stderr).decode("utf-8")
    assert run.returncode == 0, err
    docs = shuffled(INPUT)
    held, held_mean, trained, trained_mean = held_out_line(err)
    assert (held, trained) == ("50", str(min(50, steps))), err
    expected_held = mean_loss(docs[-50:], tmp_path / "m.json")
    expected_trained = mean_loss(docs[max(0, steps - 50):steps], tmp_path / "m.json")
    assert (held_mean, trained_mean) == (f"{expected_held:.4f}", f"{expected_trained:.4f}"), (
        f"the line says {held_mean} and {trained_mean}; a forward pass on the last 50 documents "
        f"gives {expected_held!r}, on the last {trained} trained on, {expected_trained!r}")


def test_it_changes_nothing_else_and_zero_turns_it_off(tmp_path):
    """With and without the held-out loss: the same stdout (so the same samples: no random number
    is drawn for it) and the same saved model, to the last bit of every weight and of the random
    state; with --held-out 0 there is no line."""
    names = write(tmp_path / "names.txt", "".join(f"{name}\n" for name in NAMES * 4))
    outputs = {}
    for held_out in ("8", "0"):
        run = run_script(["--input", str(names), *SMALL, "--num-steps", "20", "--held-out",
                          held_out, "--save", f"m{held_out}.json"], cwd=tmp_path)
        err = printed(run.stderr).decode("utf-8")
        assert run.returncode == 0, err
        assert ("mean loss on 8 documents never trained on" in err) == (held_out == "8"), err
        outputs[held_out] = (run.stdout, (tmp_path / f"m{held_out}.json").read_bytes())
    assert outputs["8"][0] == outputs["0"][0], "stdout differs with the held-out loss"
    assert outputs["8"][1] == outputs["0"][1], "the saved model differs with the held-out loss"


@pytest.mark.parametrize("steps, reached", [(12, False), (13, True)])
def test_when_training_reaches_them_the_line_says_so(steps, reached, tmp_path, capsys):
    """16 documents, 4 held out: 12 steps train on the first 12, and 13 reach the 13th."""
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    code, out, err = run_main(capsys, ["--input", str(names), *SMALL, "--num-steps", str(steps),
                                       "--held-out", "4"])
    assert code == 0, err
    if reached:
        assert ("microgpt: no held-out loss: training reached the last 4 documents (see "
                "--held-out)") in err.splitlines(), err
    else:
        assert held_out_line(err)[::2] == ("4", "4"), err


def edited_dot(source):
    """dot() written with a list instead of a generator: the same numbers, but an edit, so the
    run uses the plain code."""
    return source.replace("    return sum(ai * bi for ai, bi in zip(a, b))",
                          "    return sum([ai * bi for ai, bi in zip(a, b)])")


@pytest.mark.parametrize("how", ["--plain", "dot() edited"])
def test_the_plain_code_computes_the_same_figure(how, tmp_path):
    names = write(tmp_path / "names.txt", "".join(f"{name}\n" for name in NAMES * 2))
    args = ["--input", str(names), *SMALL, "--num-steps", "12", "--held-out", "10"]
    fast = run_script(args, cwd=tmp_path)
    if how == "--plain":
        plain = run_script([*args, "--plain"], cwd=tmp_path)
    else:
        plain = run_script(args, cwd=tmp_path, script=copy_of_microgpt(tmp_path, edited_dot))
        assert b"dot edited" in plain.stderr, plain.stderr
    assert fast.returncode == plain.returncode == 0, (fast.stderr, plain.stderr)
    lines = [held_out_line(printed(run.stderr).decode("utf-8")) for run in (fast, plain)]
    assert lines[0] == lines[1], f"fast: {lines[0]}, {how}: {lines[1]}"
