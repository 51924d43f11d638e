"""Looking inside (README: "Look inside"): what --inspect shows, the loss trend and which samples
are in the training data.

The claims: --inspect TEXT prints, after the samples, a row per position of TEXT tokenized as
training tokenizes a document, with the model's probability for the real next token, its -log p
and the 5 likeliest next tokens; its mean -log p is exactly the loss training computes for that
document; the attention tables hold each layer's and head's weights, every row adding up to 1;
tokens are shown readably and stay aligned whatever their width; it works after training and
after --load, at any shape, draws no random number and changes no weight; bad text is the same
one-line error as a bad --prompt. After training, standard error gets the loss trend, and after
sampling, which samples are documents of the training data; standard output is unchanged."""
import json
import math
import random
import re

import pytest

import microgpt
from conftest import (HEADER, INPUT, NAMES, assert_one_error_line, configure, encode, golden,
                      golden_args, new_model, quietly, run_main, run_script, sample_texts,
                      split_stderr, write)

SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-steps", "5"]


def inspection(out):
    """The inspection part of a run's stdout: its lines, from the header on."""
    start = out.index("\n--- inspect ")
    return out[start + 1:].splitlines()


def test_the_inspection_follows_the_reference_output(tmp_path):
    # Standard output is the golden, byte for byte, and then the inspection: so inspecting draws
    # no random number (the samples before it are the same) and sampling is unchanged
    result = run_script([*golden_args("short"), "--input", INPUT, "--inspect", "emma"], tmp_path)
    expected = golden("short", "out")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(expected), result.stdout[:len(expected) + 100]
    rest = result.stdout[len(expected):].decode()
    assert rest.startswith("\n--- inspect 'emma': what the model expects after each token ---\n")


def trained(docs, **shape):
    """A model trained for 5 steps on docs (quietly): (uchars, state_dict, params)."""
    uchars, state_dict, params = new_model(docs, seed=3, **shape)
    configure(num_steps=5)
    with microgpt.efficiency():
        quietly(microgpt.train, docs, uchars, len(uchars), state_dict, params, [])
    return uchars, state_dict, params


SHAPES = [dict(n_embd=8, n_head=2, block_size=8), dict(n_layer=2, n_embd=8, n_head=4,
                                                       block_size=6)]


@pytest.mark.parametrize("shape", SHAPES, ids=["1 layer, 2 heads", "2 layers, 4 heads"])
@pytest.mark.parametrize("text", ["emma", "charlottes"], ids=["short", "cut at block_size"])
def test_each_row_is_a_position_of_the_text_as_training_tokenizes_it(text, shape):
    uchars, state_dict, params = trained(NAMES, **shape)
    before = ([p.data for p in params], [p.grad for p in params], random.getstate())
    rows, loss, attention = microgpt.look_inside(text, uchars, len(uchars), state_dict)
    after = ([p.data for p in params], [p.grad for p in params], random.getstate())
    assert after == before, "inspecting changed a weight, a gradient or the random state"

    tokens = encode(text, uchars)
    n = min(microgpt.block_size, len(tokens) - 1)
    assert [(seen, nxt) for seen, nxt, _, _ in rows] == list(zip(tokens[:n], tokens[1:n + 1]))
    keys, values = [[] for _ in range(microgpt.n_layer)], [[] for _ in range(microgpt.n_layer)]
    for pos, (seen, nxt, probs, loss_t) in enumerate(rows):
        logits = [v.data for v in microgpt.gpt(seen, pos, keys, values, state_dict)]
        top = max(logits)
        expected = [math.exp(x - top) / sum(math.exp(y - top) for y in logits) for x in logits]
        worst = max(abs(p - e) for p, e in zip(probs, expected))
        assert worst < 1e-15, f"position {pos}: the probabilities are off by {worst}"
        assert loss_t == -math.log(probs[nxt]), (pos, loss_t, probs[nxt])

    # Attention: per position, n_layer * n_head rows of weights over the positions up to it
    assert len(attention) == n
    for pos, heads in enumerate(attention):
        assert len(heads) == microgpt.n_layer * microgpt.n_head
        for weights in heads:
            assert len(weights) == pos + 1, (pos, weights)
            assert abs(sum(weights) - 1) < 1e-12 and min(weights) > 0, (pos, weights)


@pytest.mark.parametrize("text", ["emma", "charlottes", "liam"])
def test_the_mean_is_the_loss_training_computes_for_that_document(text):
    # train() on this one document, one step at a learning rate of 0: its loss, as recorded
    uchars, state_dict, params = trained(NAMES, **SHAPES[0])
    _, loss, _ = microgpt.look_inside(text, uchars, len(uchars), state_dict)
    configure(num_steps=1, learning_rate=0.0)
    step_losses = []
    quietly(microgpt.train, [text], uchars, len(uchars), state_dict, params, step_losses)
    assert loss == step_losses[0], f"inspection {loss!r}, training {step_losses[0]!r}"


def test_the_printed_inspection(tmp_path, capsys):
    names = write(tmp_path / "names.txt", "".join(f"{name}\n" for name in NAMES))
    code, out, err = run_main(capsys, ["--input", str(names), *SMALL, "--num-samples", "2",
                                       "--inspect", "ava"])
    assert code == 0, err
    lines = inspection(out)
    assert lines[1].split() == ["seen", "next", "p(next)", "-log", "p", "likeliest", "next",
                                "tokens"], lines[1]
    rows = [line.split() for line in lines[2:6]]
    assert [row[:2] for row in rows] == [["BOS", "a"], ["a", "v"], ["v", "a"], ["a", "BOS"]]
    for row in rows:
        p, minus_log_p = float(row[2]), float(row[3])
        assert abs(minus_log_p + math.log(p)) < 1e-3, row  # both printed to 4 decimals
        top = [float(x) for x in row[5::2]]
        assert len(top) == 5 and top == sorted(top, reverse=True), row
    mean = re.fullmatch(r"mean -log p: (\d\.\d{4}) \(the loss training computes for this "
                        r"document\)", lines[6])
    assert mean and abs(float(mean[1]) - sum(float(r[3]) for r in rows) / 4) < 1e-3, lines[6]
    # One table per head (1 layer, 2 heads): a header and a lower-triangular row per position
    tables = [i for i, line in enumerate(lines) if line.startswith("attention, layer ")]
    assert [lines[i][:28] for i in tables] == ["attention, layer 0, head 0: ",
                                               "attention, layer 0, head 1: "], tables
    for i in tables:
        assert lines[i + 1].split() == ["BOS", "a", "v", "a"]
        for pos, row in enumerate(lines[i + 2:i + 6]):
            label, *weights = row.split()
            assert len(weights) == pos + 1 and abs(sum(map(float, weights)) - 1) < 0.02, row


def test_it_works_after_load_at_another_shape(tmp_path, capsys):
    names = write(tmp_path / "names.txt", "".join(f"{name}\n" for name in NAMES))
    model = str(tmp_path / "model.json")
    args = ["--n-layer", "2", "--n-embd", "8", "--n-head", "4", "--block-size", "8"]
    code, trained_out, err = run_main(capsys, ["--input", str(names), *args, "--num-steps", "3",
                                               "--save", model, "--inspect", "mia"])
    assert code == 0, err
    code, loaded_out, err = run_main(capsys, ["--load", model, "--inspect", "mia"])
    assert code == 0 and err == "", err
    assert inspection(loaded_out) == inspection(trained_out)
    assert sum(line.startswith("attention, layer ") for line in inspection(loaded_out)) == 8


def test_tokens_are_shown_readably_and_stay_aligned(tmp_path, capsys):
    # BOS, a space, a tab, and Hangul, two terminal columns wide where str.ljust counts one
    names = write(tmp_path / "names.txt", "민준\n서 연\n하\t은\nab\n")
    code, out, err = run_main(capsys, ["--input", str(names), "--num-steps", "2",
                                       "--num-samples", "0", "--inspect", "서 연"])
    assert code == 0, err
    lines = inspection(out)
    assert [line.split()[:2] for line in lines[2:6]] == [
        ["BOS", "서"], ["서", "␣"], ["␣", "연"], ["연", "BOS"]], lines[2:6]
    assert microgpt.shown(list("\tab"), 0) == "\\t" and microgpt.shown(list("ab"), 2) == "BOS"

    def columns(line):  # the terminal column where each cell starts
        starts, at, before = [], 0, " "
        for ch in line:
            if ch != " " and before == " ":
                starts.append(at)
            at += microgpt.width(ch)
            before = ch
        return starts

    table = lines[lines.index(next(x for x in lines if x.startswith("attention"))) + 1:][:5]
    header = columns(table[0])
    for row in table[1:]:
        assert columns(row) == [0] + header[:len(columns(row)) - 1], (table[0], row)
    rows = lines[2:6]
    assert len({tuple(columns(row)[:4]) for row in rows}) == 1, rows


@pytest.mark.parametrize("use_load", [False, True], ids=["training", "--load"])
def test_a_character_outside_the_vocabulary_is_the_prompts_error(use_load, tmp_path, capsys):
    names = write(tmp_path / "names.txt", "".join(f"{name}\n" for name in NAMES))
    model = str(tmp_path / "model.json")
    assert run_main(capsys, ["--input", str(names), *SMALL, "--save", model])[0] == 0
    argv = ["--load", model] if use_load else ["--input", str(names), *SMALL]
    code, out, err = run_main(capsys, [*argv, "--inspect", "emZa"])
    expected_out = "" if use_load else "num docs: 16\nvocab size: 19\n"  # before any training
    line = assert_one_error_line(code, out, err, expected_code=2, expected_out=expected_out)
    uchars = "".join(sorted(set("".join(NAMES))))
    assert line == f"microgpt: --inspect: 'Z' is not in the vocabulary: {uchars!r}", line


def test_a_probability_too_small_for_its_log_is_one_line(tmp_path, capsys):
    # A model sure of one letter after another: -log of the others' probability, 0, is no number
    names = write(tmp_path / "names.txt", "ab\n")
    model = str(tmp_path / "model.json")
    assert run_main(capsys, ["--input", str(names), *SMALL, "--save", model])[0] == 0
    with open(model, encoding="utf-8") as f:
        saved = json.load(f)
    saved["state_dict"]["lm_head"] = [[1e4] * 8, [-1e4] * 8, [0.0] * 8]
    with open(model, "w", encoding="utf-8") as f:
        json.dump(saved, f)
    code, out, err = run_main(capsys, ["--load", model, "--num-samples", "0", "--inspect", "ba"])
    line = assert_one_error_line(code, out, err, expected_out=HEADER)
    assert line == "microgpt: numbers out of range while inspecting (math domain error)", line


def test_empty_text_is_a_usage_error(tmp_path, capsys):
    code, out, err = run_main(capsys, ["--inspect", ""])
    assert code == 2 and out == "" and err.startswith("usage: ") and "--inspect" in err, err


# The loss trend and the samples found in the data, on standard error

def record_trend(monkeypatch):
    """The step losses report_trend() is given, in a list, as the run goes."""
    recorded, real_report = [], microgpt.report_trend

    def recording_report(step_losses):
        recorded.append(step_losses)
        real_report(step_losses)

    monkeypatch.setattr(microgpt, "report_trend", recording_report)
    return recorded


def test_the_loss_trend_is_the_mean_of_the_first_and_last_tenth(tmp_path, capsys, monkeypatch):
    names = write(tmp_path / "names.txt", "".join(f"{name}\n" for name in NAMES))
    recorded = record_trend(monkeypatch)
    code, out, err = run_main(capsys, ["--input", str(names), *SMALL, "--num-steps", "40",
                                       "--num-samples", "3"])
    assert code == 0, err
    (step_losses,) = recorded
    printed = [float(x) for x in re.findall(r"\| loss (\d\.\d{4})\r", out)]
    assert [round(x, 4) for x in step_losses] == printed, "the trend is not of the step lines"
    first, last = sum(step_losses[:4]) / 4, sum(step_losses[-4:]) / 4
    reports = split_stderr(err)[0]
    assert reports[0].startswith(f"microgpt: mean loss {first:.4f} over steps 1-4, "
                                 f"{last:.4f} over steps 37-40; in twentieths: "), reports
    spark = reports[0].rsplit(" ", 1)[1]
    assert len(spark) == 20 and set(spark) <= set("▁▂▃▄▅▆▇█"), spark
    means = [sum(step_losses[2 * i:2 * i + 2]) / 2 for i in range(20)]
    assert spark[means.index(max(means))] == "█" and spark[means.index(min(means))] == "▁"


@pytest.mark.parametrize("steps, expected", [
    (1, "mean loss {a:.4f} over step 1, {a:.4f} over step 1"),
    (5, "mean loss {a:.4f} over step 1, {e:.4f} over step 5; step by step: "),
])
def test_a_short_training_still_gets_a_trend_line(steps, expected, tmp_path, capsys, monkeypatch):
    names = write(tmp_path / "names.txt", "".join(f"{name}\n" for name in NAMES))
    recorded = record_trend(monkeypatch)
    code, out, err = run_main(capsys, ["--input", str(names), *SMALL, "--num-steps", str(steps)])
    losses = recorded[0]
    line = split_stderr(err)[0][0]
    assert line.startswith("microgpt: " + expected.format(a=losses[0], e=losses[-1])), line


def test_no_trend_without_training(tmp_path, capsys):
    names = write(tmp_path / "names.txt", "".join(f"{name}\n" for name in NAMES))
    code, out, err = run_main(capsys, ["--input", str(names), "--num-steps", "0"])
    assert code == 0 and not any("mean loss" in line for line in err.splitlines()), err


def test_samples_that_are_documents_of_the_training_data_are_named(tmp_path, capsys):
    # A language of a's: most samples are one of its three documents
    names = write(tmp_path / "names.txt", "a\naa\naaa\n")
    code, out, err = run_main(capsys, ["--input", str(names), "--num-steps", "20",
                                       "--num-samples", "10", "--temperature", "0.3"])
    assert code == 0, err
    samples = sample_texts(out)
    known = [s for s in samples if s in ("a", "aa", "aaa")]
    line = split_stderr(err)[0][1]
    assert known, f"no sample is a document here: {samples}"
    verb = "is" if len(known) == 1 else "are"
    new = len(samples) - len(known)
    assert line == (f"microgpt: {len(known)} of the 10 samples {verb} in the training data "
                    f"({', '.join(known)}); {new} {'is' if new == 1 else 'are'} new"), line


def test_when_no_sample_is_in_the_data_the_line_says_so(capsys):
    microgpt.report_known(["zq", "qz"], ["emma", "ava"])
    assert capsys.readouterr().err == "microgpt: none of the 2 samples is in the training data\n"


def test_the_reports_leave_standard_output_alone(tmp_path):
    result = run_script([*golden_args("config"), "--input", INPUT], tmp_path)
    assert result.stdout == golden("config", "out")
    reports, errors = split_stderr(result.stderr.decode())
    assert len(reports) == 2 and errors == [], result.stderr
    assert HEADER.encode() in result.stdout
