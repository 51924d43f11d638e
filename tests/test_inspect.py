"""Looking inside: --inspect TEXT, and the reports on standard error after training.

The claims: --inspect prints a row per position of TEXT as training tokenizes a document, with
the model's probability of the real next token, its -log p and the 5 likeliest next tokens, all
as the model computes them; its mean is the loss training computes for that document; the
attention tables are the weights gpt() computes, each row adding up to 1; it works after --load
at another shape, draws no random number and changes no weight; tokens are shown readably, in
aligned columns even where a letter takes two terminal columns; a letter the model does not
know is one line before training. After training, standard error gets the mean loss by
twentieths, the held-out loss (tests/test_held_out.py) and the samples that are documents of the
training data; standard output does not, and a run without training gets none of them but the
held-out loss of its untrained model."""
import math
import random
import re
import types
import unicodedata

import pytest

import microgpt
from helpers import (INPUT, NAMES, NAMES_TEXT, assert_one_error_line, configure, encode, golden,
                     golden_args, new_model, quietly, run_main, run_quietly, sample_texts, write)

SMALL = ["--n-embd", "8", "--n-head", "2", "--block-size", "8", "--num-steps", "5"]
TINY = ["--n-embd", "4", "--n-head", "2", "--block-size", "6"]  # for runs of many steps
TWO_LAYERS = dict(n_layer=2, n_embd=8, n_head=2, block_size=8)
UCHARS = "".join(sorted(set("".join(NAMES))))
BLOCKS = "▁▂▃▄▅▆▇█"
TREND = "microgpt: mean loss by twentieths of training: "
KNOWN = "microgpt: samples also in the input file: "
HELD = "microgpt: mean loss on "


def report(err, start):
    """The line of stderr that starts with start."""
    lines = [line for line in err.splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"no single line starting {start!r} in {err!r}"
    return lines[0]



@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model of 2 layers and 4 heads, trained 3 steps on helpers.NAMES, saved and inspected
    on 'mia', once for this file: its path, the names file, the run's stdout and stderr."""
    folder = tmp_path_factory.mktemp("inspect")
    names = write(folder / "names.txt", NAMES_TEXT)
    path = folder / "model.json"
    code, out, err = run_quietly(["--input", str(names), "--n-layer", "2", "--n-embd", "8",
                                  "--n-head", "4", "--block-size", "8", "--num-steps", "3",
                                  "--save", str(path), "--inspect", "mia"])
    assert code == 0, err
    return types.SimpleNamespace(path=path, names=names, out=out, err=err)


def inspection(out):
    """The lines of the inspection in a run's stdout, from its title on."""
    assert "\n--- inspect " in out, out
    return out[out.index("\n--- inspect ") + 1:].splitlines()


def inspect_lines(capsys, text, uchars, state_dict):
    """The lines microgpt.inspect_model prints for text, after its title."""
    capsys.readouterr()
    microgpt.inspect_model(text, uchars, len(uchars), state_dict)
    lines = capsys.readouterr().out.splitlines()
    title = f"--- inspect {text!r}: what the model expects after each token ---"
    assert lines[:2] == ["", title], lines[:2]
    return lines[2:]


def shown(token, uchars):
    """A token as a reader should see it: BOS, a letter, ␣ for a space, \\t for a tab."""
    if token == len(uchars):
        return "BOS"
    return {" ": "␣", "\t": "\\t"}.get(uchars[token], uchars[token])


def positions(text, uchars, state_dict):
    """Per position of text as training tokenizes it, computed here from microgpt's gpt() and
    softmax(): (seen, next, the probability of each next token, the weights of each attention
    softmax within gpt(), layer by layer and head by head)."""
    tokens = encode(text, uchars)
    keys = [[] for _ in range(microgpt.n_layer)]
    values = [[] for _ in range(microgpt.n_layer)]
    real_softmax, attention, rows = microgpt.softmax, [], []

    def recording_softmax(logits):
        weights = real_softmax(logits)
        attention.append([w.data for w in weights])
        return weights

    for pos in range(min(microgpt.block_size, len(tokens) - 1)):
        microgpt.softmax = recording_softmax  # gpt() calls softmax() only for attention
        try:
            logits = microgpt.gpt(tokens[pos], pos, keys, values, state_dict)
        finally:
            microgpt.softmax = real_softmax
        probs = [p.data for p in real_softmax(logits)]
        rows.append((tokens[pos], tokens[pos + 1], probs, attention[:]))
        del attention[:]
    return rows


def first_row_difference(expected, got):
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            return f"row {i}: expected {e}, got {g}"
    return f"{len(expected)} rows expected, {len(got)} printed"


# --inspect

@pytest.mark.parametrize("text", ["ava", "charlotte"], ids=["short", "cut at block_size"])
def test_each_row_is_a_position_of_the_text_as_training_tokenizes_it(text, capsys, efficient):
    uchars, state_dict, _ = new_model(NAMES, seed=3, **TWO_LAYERS)
    lines = inspect_lines(capsys, text, uchars, state_dict)
    assert lines[0].split() == ["seen", "next", "p(next)", "-log", "p", "likeliest", "next",
                                "tokens"], lines[0]
    expected = []
    for seen, nxt, probs, _ in positions(text, uchars, state_dict):
        top = sorted(range(len(probs)), key=lambda t: -probs[t])[:5]
        expected.append([shown(seen, uchars), shown(nxt, uchars), f"{probs[nxt]:.4f}",
                         f"{-math.log(probs[nxt]):.4f}",
                         *(cell for t in top for cell in (shown(t, uchars), f"{probs[t]:.3f}"))])
    # BOS, the letters, BOS; at most block_size (8) predictions: "charlotte" loses its end
    assert len(expected) == min(8, len(text) + 1)
    got = [line.split() for line in lines[1:len(expected) + 1]]
    assert got == expected, first_row_difference(expected, got)
    assert lines[len(expected) + 1].startswith("mean -log p: "), "more rows than positions"


@pytest.mark.parametrize("text", ["ava", "olivia", "charlotte"])
def test_the_mean_is_the_loss_training_computes_for_that_document(text, capsys, efficient):
    uchars, state_dict, params = new_model(NAMES, seed=3, **TWO_LAYERS)
    capsys.readouterr()
    mean = microgpt.inspect_model(text, uchars, len(uchars), state_dict)
    lines = capsys.readouterr().out.splitlines()
    # train() on this one document for one step, at a learning rate of 0 (no weight moves):
    # the loss it records for it, which the mean must equal to the last bit, and show to the 4
    # decimals printed
    configure(num_steps=1, learning_rate=0.0)
    (loss,) = quietly(microgpt.train, [text], uchars, len(uchars), state_dict, params)
    assert mean == loss, f"inspection's mean {mean!r}, training's loss {loss!r}"
    means = [line for line in lines if line.startswith("mean -log p: ")]
    assert means == [f"mean -log p: {loss:.4f} (the loss training computes for this document)"], (
        f"training's loss {loss!r}; printed {means}")


def test_the_attention_tables_are_the_weights_gpt_computes_and_rows_add_up_to_1(capsys, efficient):
    uchars, state_dict, _ = new_model(NAMES, seed=3, **TWO_LAYERS)
    text = "olivia"
    lines = inspect_lines(capsys, text, uchars, state_dict)
    rows = positions(text, uchars, state_dict)
    seen = [shown(token, uchars) for token, _, _, _ in rows]
    titles = [line for line in lines if line.startswith("attention, ")]
    assert len(titles) == 4, titles  # 2 layers of 2 heads
    for layer in range(2):
        for head in range(2):
            at = lines.index(f"attention, layer {layer}, head {head}: how much each row takes "
                             f"from each column")
            header, *table = lines[at + 1:at + 2 + len(rows)]
            assert header.split() == seen, header
            for i, line in enumerate(table):
                weights = rows[i][3][layer * 2 + head]  # gpt() runs layer by layer, head by head
                expected = [seen[i], *(f"{w:.2f}" for w in weights)]
                assert line.split() == expected, (layer, head, i, line, expected)
                # 1 to within the rounding of the divisions and the sum (8 weights at most, each
                # within 2 roundings of 1.1e-16)
                assert abs(sum(weights) - 1) < 1e-14, (layer, head, i, weights)
                # and as printed: each weight moves by at most 0.005 when rounded to 2 decimals
                printed = [float(cell) for cell in line.split()[1:]]
                assert abs(sum(printed) - 1) <= 0.005 * len(printed) + 1e-12, (layer, head, line)


def test_it_works_after_load_at_another_shape(trained, capsys):
    # The saved model has 2 layers, 8 wide, 4 heads, block_size 8: not the file's defaults
    code, out, err = run_main(capsys, ["--load", str(trained.path), "--num-samples", "0",
                                       "--inspect", "mia"])
    assert code == 0 and err == "", (code, err)
    assert inspection(out) == inspection(trained.out), f"{out}\n!=\n{trained.out}"
    titles = [line for line in inspection(out) if line.startswith("attention, layer ")]
    assert len(titles) == 8, titles


def test_inspecting_draws_no_random_number_and_changes_no_weight(capsys, efficient):
    uchars, state_dict, params = new_model(NAMES, seed=3, **TWO_LAYERS)
    for i, p in enumerate(params):
        p.grad = i / 7  # some gradients, which inspecting must neither add to nor clear
    random.seed(5)
    state = random.getstate()
    before = [(p.data, p.grad) for p in params]
    functions = (microgpt.gpt, microgpt.softmax)
    inspect_lines(capsys, "charlotte", uchars, state_dict)
    assert random.getstate() == state, "inspecting drew random numbers"
    after = [(p.data, p.grad) for p in params]
    changed = [i for i, (b, a) in enumerate(zip(before, after)) if a != b]
    assert not changed, (f"{len(changed)} parameters changed, the first ({changed[0]}): "
                         f"{before[changed[0]]} -> {after[changed[0]]}")
    assert (microgpt.gpt, microgpt.softmax) == functions, "gpt or softmax left replaced"


def test_a_run_samples_and_saves_the_same_with_and_without_inspect(trained, tmp_path, capsys):
    path = tmp_path / "model.json"
    code, out, err = run_main(capsys, ["--input", str(trained.names), "--n-layer", "2",
                                       "--n-embd", "8", "--n-head", "4", "--block-size", "8",
                                       "--num-steps", "3", "--save", str(path)])
    assert code == 0, err
    assert trained.out.startswith(out) and trained.out[len(out):].startswith("\n--- inspect "), (
        f"without --inspect:\n{out}\nwith it:\n{trained.out}")
    assert path.read_bytes() == trained.path.read_bytes(), "another model saved"
    assert err == trained.err, (err, trained.err)


def width(text):
    """Terminal columns: 2 for a wide or fullwidth letter (Hangul, CJK), else 1."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def cell_starts(line):
    """The terminal column at which each run of letters other than spaces starts."""
    starts, column, before = [], 0, " "
    for ch in line:
        if ch != " " and before == " ":
            starts.append(column)
        column += width(ch)
        before = ch
    return starts


def test_tokens_are_readable_and_columns_stay_aligned(capsys, efficient):
    # A space, a tab, and Hangul, whose letters take two terminal columns where len() counts one
    docs = ["민준", "서 연", "하\t은", "ab"]
    uchars, state_dict, _ = new_model(docs, seed=1, n_embd=8, n_head=2, block_size=8)
    lines = inspect_lines(capsys, "서 연\t민", uchars, state_dict)
    rows = lines[1:7]
    assert [row.split()[:2] for row in rows] == [
        ["BOS", "서"], ["서", "␣"], ["␣", "연"], ["연", "\\t"], ["\\t", "민"], ["민", "BOS"]], rows
    assert lines[7].startswith("mean -log p: "), lines[7]
    # Every row's cells start at the same columns (p(next) is right-aligned, so even that one)
    starts = {tuple(cell_starts(row)) for row in rows}
    assert len(starts) == 1, "\n".join(rows)
    # In each attention table, the header's tokens stand over the columns of weights, and each
    # row's cells start where the last, longest row's do
    tables = [i for i, line in enumerate(lines) if line.startswith("attention, layer ")]
    assert len(tables) == 2, tables
    for at in tables:
        header, *table = lines[at + 1:at + 8]
        full = cell_starts(table[-1])
        assert cell_starts(header) == full[1:], f"{header}\n{table[-1]}"
        for row in table:
            assert cell_starts(row) == full[:len(cell_starts(row))], f"{row}\n{table[-1]}"


@pytest.mark.parametrize("loaded", [False, True], ids=["trained", "--load"])
def test_a_letter_the_model_does_not_know_is_one_line_before_training(loaded, trained, capsys):
    argv = ["--load", str(trained.path)] if loaded else ["--input", str(trained.names), *SMALL]
    expected_out = "" if loaded else "num docs: 16\nvocab size: 19\n"  # and no num params
    line = assert_one_error_line(*run_main(capsys, [*argv, "--inspect", "emZa"]),
                                 expected_out=expected_out)
    assert line == (f"microgpt: --inspect 'emZa': 'Z' is not one of the model's characters, "
                    f"{UCHARS!r}"), line


# The reports on standard error

@pytest.mark.parametrize("steps", [40, 5, 1])
def test_the_trend_line_gives_the_mean_loss_of_the_first_and_last_twentieth(
        steps, trained, capsys, monkeypatch):
    recorded, real_train = [], microgpt.train

    def recording_train(*args):
        step_losses = real_train(*args)
        recorded.append(step_losses)
        return step_losses

    monkeypatch.setattr(microgpt, "train", recording_train)
    code, out, err = run_main(capsys, ["--input", str(trained.names), *TINY,
                                       "--num-steps", str(steps), "--num-samples", "2"])
    assert code == 0, err
    (losses,) = recorded
    printed = re.findall(r"\| loss (\d+\.\d{4})\r", out)
    assert [f"{x:.4f}" for x in losses] == printed, "the losses are not the run's steps"
    parts = min(20, steps)  # twentieths, or single steps when there are fewer than 20
    size = steps // parts   # 40 steps: 2 a part
    means = [sum(losses[i * size:(i + 1) * size]) / size for i in range(parts)]
    line = err.splitlines()[0]
    assert line.startswith(TREND), err
    first, spark, last = line[len(TREND):].split(" ")
    assert (first, last) == (f"{means[0]:.4f}", f"{means[-1]:.4f}"), (line, means)
    assert len(spark) == parts and set(spark) <= set(BLOCKS), (parts, spark)
    # A higher mean never gets a lower mark; the lowest gets ▁ and the highest █
    marks = [BLOCKS.index(mark) for mark in spark]
    order = sorted(range(parts), key=lambda i: means[i])
    assert all(marks[a] <= marks[b] for a, b in zip(order, order[1:])), (spark, means)
    assert marks[order[0]] == 0 and (parts == 1 or marks[order[-1]] == 7), (spark, means)


def test_the_samples_that_are_documents_of_the_training_data_are_named(tmp_path, capsys):
    # A language of a's and b's: after 10 steps, some samples are documents and some are not
    docs = ["a", "aa", "aaa", "b"]
    names = write(tmp_path / "names.txt", "".join(f"{doc}\n" for doc in docs))
    code, out, err = run_main(capsys, ["--input", str(names), *TINY, "--num-steps", "10",
                                       "--num-samples", "8", "--temperature", "0.3"])
    assert code == 0, err
    samples = sample_texts(out)
    known = [sample for sample in samples if sample in docs]  # in order, each time it comes
    assert known and len(known) < len(samples), f"cannot tell anything from {samples}"
    assert len(set(known)) < len(known), f"no repeated document in {known}"
    assert report(err, KNOWN) == KNOWN + ", ".join(known), (samples, err)


def test_when_no_sample_is_a_document_the_line_says_none(trained):
    samples = sample_texts(trained.out)
    assert samples and not set(samples) & set(NAMES), samples
    assert report(trained.err, KNOWN) == KNOWN + "none", trained.err


def test_the_reports_leave_standard_output_as_the_reference_prints_it(capsys):
    code, out, err = run_main(capsys, [*golden_args("config"), "--input", INPUT])
    assert code == 0, err
    assert out.encode("utf-8") == golden("config", "out"), "stdout is not the reference's"
    reports = err.splitlines()
    assert len(reports) == 3, err
    assert [reports[0].startswith(TREND), reports[1].startswith(HELD),
            reports[2].startswith(KNOWN)] == [True, True, True], err


@pytest.mark.parametrize("run", ["--load", "--num-steps 0"])
def test_no_report_without_training_but_the_untrained_models_held_out_loss(run, trained, capsys):
    argv = (["--load", str(trained.path), "--num-samples", "3"] if run == "--load"
            else ["--input", str(trained.names), *SMALL, "--num-steps", "0"])
    code, out, err = run_main(capsys, argv)
    assert code == 0 and sample_texts(out), (code, out, err)
    if run == "--load":  # no documents at all
        assert err == "", err
    else:
        assert err.startswith(HELD) and err.count("\n") == 1, err
