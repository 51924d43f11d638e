"""Error handling: what microgpt does with bad, odd or hostile input, and with its own bugs.

The claims: every bad input or setting ends in one clear `microgpt: ...` line on stderr (or
argparse's usage message) and a nonzero exit, never a traceback, and each phase says which it
is (reading, training at step S, sampling, saving, writing the output); a bug keeps its
traceback; a download is tried only for the default input.txt and never leaves a partial file;
odd but valid text (\\r\\n, a BOM, spaces, non-ASCII) trains on exactly the documents a plain file
gives; Ctrl-C and a closed stdout stop the program quietly. No test touches the real network:
downloads go to 127.0.0.1.
"""
import contextlib
import errno
import gc
import http.server
import inspect
import os
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import microgpt  # the real file, not a copy (conftest.py puts the repository on sys.path)
from conftest import (HEADER, INPUT, NAMES, NAMES_TEXT, SCRIPT, assert_one_error_line,
                      configure, quietly, run_main, run_script, sample_texts, split_stderr, write)

FAST = ["--num-steps", "2", "--num-samples", "2"]
TINY_MODEL = ["--n-embd", "4", "--n-head", "1", "--block-size", "8"]  # ~1 ms a step
PLAIN_TEXT = NAMES_TEXT


# Helpers -----------------------------------------------------------------------------------------

def closed_port():
    """A localhost port nobody listens on: bind one, note it, let it go."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def no_real_network(monkeypatch):
    """Any download a test does not expect goes to a closed local port, never to the internet."""
    monkeypatch.setattr(microgpt, "NAMES_URL", f"http://127.0.0.1:{closed_port()}/unexpected")
    monkeypatch.setenv("no_proxy", "*")  # 127.0.0.1 must not be sent to a proxy


@contextlib.contextmanager
def http_server(status, body=b"", length=None):
    """A local HTTP server answering every GET with `status` and `body`; yields (url, paths).
    `length`, if given, is the Content-Length it promises instead: more than it sends cuts the
    transfer off midway."""
    paths = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/names.txt", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()




def flags_id(value):
    return " ".join(value) if isinstance(value, list) else None  # test ids read as flags


# The input file: missing, not downloadable, unreadable, not text, empty -------------------------

@pytest.mark.parametrize("name", ["missing.txt", "elsewhere/input.txt"])
def test_missing_input_flag_file_is_one_line_and_never_downloads(name, tmp_path, monkeypatch,
                                                                  capsys):
    # Only input.txt in the current folder, the default, is ever downloaded.
    monkeypatch.chdir(tmp_path)
    with http_server(200, PLAIN_TEXT.encode()) as (url, requests):
        monkeypatch.setattr(microgpt, "NAMES_URL", url)
        code, out, err = run_main(capsys, ["--input", name, *FAST])
    line = assert_one_error_line(code, out, err)
    assert line == f"microgpt: cannot read {name}: no such file or directory", line
    assert requests == [], f"a download was attempted: {requests}"
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)


DOWNLOAD_FAILURES = {  # what urllib says, as microgpt passes it on
    "closed port": f"[Errno {errno.ECONNREFUSED}] {os.strerror(errno.ECONNREFUSED)}",
    "404": "Not Found",  # the server's reason phrase
    "cut off": f"IncompleteRead({len(PLAIN_TEXT)} bytes read, {len(PLAIN_TEXT)} more expected)",
}


def failing_url(kind, stack):
    if kind == "closed port":
        return f"http://127.0.0.1:{closed_port()}/names.txt", None
    if kind == "404":
        return stack.enter_context(http_server(404, b"not here"))
    body = PLAIN_TEXT.encode()  # "cut off": the connection closes after half the promised bytes
    return stack.enter_context(http_server(200, body, length=2 * len(body)))


@pytest.mark.parametrize("kind", DOWNLOAD_FAILURES)
def test_failed_download_is_one_line_with_the_way_out_and_leaves_no_file(kind, tmp_path,
                                                                         monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with contextlib.ExitStack() as stack:
        url, requests = failing_url(kind, stack)
        monkeypatch.setattr(microgpt, "NAMES_URL", url)
        code, out, err = run_main(capsys, FAST)
    evidence = f"exit {code}, stdout {out!r}, stderr {err!r}"
    assert code == 1 and out == "", evidence
    # A note that the download starts, then one line: the URL, why it failed, the way out.
    expected = (f"microgpt: input.txt not found, downloading {url}\n"
                f"microgpt: cannot download {url} to input.txt ({DOWNLOAD_FAILURES[kind]}): "
                f"use --input\n")
    assert err == expected, f"{evidence}\nexpected stderr {expected!r}"
    assert os.listdir(tmp_path) == [], f"left behind: {os.listdir(tmp_path)}"
    if requests is not None:
        assert requests == ["/names.txt"], requests


def test_download_of_default_input_writes_exact_bytes_and_notes_on_stderr(tmp_path, monkeypatch,
                                                                          capsys):
    body = PLAIN_TEXT.replace("\n", "\r\n").encode()  # exact bytes, not re-encoded text
    (tmp_path / "dl").mkdir()
    monkeypatch.chdir(tmp_path / "dl")
    with http_server(200, body) as (url, requests):
        monkeypatch.setattr(microgpt, "NAMES_URL", url)
        code, out, err = run_main(capsys, FAST)
        assert code == 0, f"exit {code}, stderr {err!r}"
        again = run_main(capsys, FAST)  # input.txt is there now: no second download
    assert requests == ["/names.txt"], requests
    assert os.listdir(tmp_path / "dl") == ["input.txt"], os.listdir(tmp_path / "dl")
    assert (tmp_path / "dl" / "input.txt").read_bytes() == body
    # The note comes first; after it only the run's own reports (the loss trend, the samples)
    note = f"microgpt: input.txt not found, downloading {url}"
    assert split_stderr(err)[1] == [note] and err.startswith(note), err
    assert "download" not in out and url not in out, out
    reference = write(tmp_path / "names.txt", body)
    assert run_main(capsys, ["--input", str(reference), *FAST])[1] == out == again[1]


def test_directory_as_input_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    line = assert_one_error_line(*run_main(capsys, ["--input", "data", *FAST]))
    assert line == "microgpt: cannot read data: is a directory", line


def test_unreadable_input_is_one_line(tmp_path, monkeypatch, capsys):
    # We run as root, where chmod 000 does not stop reading: make open() refuse this one path.
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "secret.txt", PLAIN_TEXT)
    real_open = open

    def refusing_open(file, *args, **kwargs):
        if os.path.abspath(file) == str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(microgpt, "open", refusing_open, raising=False)
    line = assert_one_error_line(*run_main(capsys, ["--input", "secret.txt", *FAST]))
    assert line == "microgpt: cannot read secret.txt: permission denied", line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_unreadable_input_by_permissions_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "secret.txt", PLAIN_TEXT).chmod(0)
    line = assert_one_error_line(*run_main(capsys, ["--input", "secret.txt", *FAST]))
    assert line == "microgpt: cannot read secret.txt: permission denied", line


@pytest.mark.parametrize("before, bad, after", [
    (b"anna\nbob\n", b"\xff", b"carl\n"),                          # a byte that is never UTF-8
    (b"\xef\xbb\xbfzo\xc3\xab\n", b"\xe9", b"mile\n"),              # Latin-1 after a BOM and ë
    (PLAIN_TEXT.encode(), b"\xc3", b""),                            # cut in the middle of a char
    ("민준\n".encode(), b"\xed\xa0\x80", b"\n"),                    # a UTF-16 surrogate
], ids=["0xff", "latin1-after-bom", "truncated", "surrogate"])
def test_invalid_utf8_names_the_byte_offset(before, bad, after, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bad.txt", before + bad + after)
    line = assert_one_error_line(*run_main(capsys, ["--input", "bad.txt", *FAST]))
    # The offset counts bytes from the start of the file, from 0: the number of good bytes.
    assert line == f"microgpt: cannot read bad.txt: not valid UTF-8 at byte {len(before)}", line


@pytest.mark.parametrize("data", [b"", b"\n\n\n", b"  \n\t\n\r\n \r\n", b"\xef\xbb\xbf\n  \n"],
                         ids=["empty", "newlines", "whitespace", "bom-only"])
def test_input_without_documents_is_one_line(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "blank.txt", data)
    line = assert_one_error_line(*run_main(capsys, ["--input", "blank.txt", *FAST]),
                                 expected_out="num docs: 0\n")
    expected = "microgpt: blank.txt has no documents: it is empty or has only blank lines"
    assert line == expected, f"expected {expected!r}, got {line!r}"


# Odd but valid text: the same documents, so the same run -----------------------------------------

SAME_DOCS = {
    "crlf": PLAIN_TEXT.replace("\n", "\r\n"),
    "cr": PLAIN_TEXT.replace("\n", "\r"),  # old Mac endings: open() splits lines there too
    "bom": "\ufeff" + PLAIN_TEXT,
    "bom-crlf": "\ufeff" + PLAIN_TEXT.replace("\n", "\r\n"),
    "spaces": "".join(f"  {name} \t\n" for name in NAMES),
    "blank-lines": "\n \n" + PLAIN_TEXT.replace("\n", "\n\t\n"),
    "no-final-newline": PLAIN_TEXT.rstrip("\n"),
}


@pytest.mark.parametrize("variant", SAME_DOCS)
def test_line_endings_bom_and_spaces_give_the_plain_files_run(variant, tmp_path, capsys):
    plain = write(tmp_path / "plain.txt", PLAIN_TEXT)
    odd = write(tmp_path / f"{variant}.txt", SAME_DOCS[variant])
    random.seed(0)
    docs = quietly(microgpt.load_docs, str(odd))
    random.seed(0)
    assert docs == quietly(microgpt.load_docs, str(plain)), docs  # the same, shuffled the same
    uchars = quietly(microgpt.tokenizer, docs)[0]
    assert uchars == sorted(set("".join(NAMES))), uchars  # no "\ufeff", "\r", " " token
    code, out, err = run_main(capsys, ["--input", str(odd), *FAST])
    assert code == 0, f"exit {code}, stderr {err!r}"
    expected = run_main(capsys, ["--input", str(plain), *FAST])[1]
    assert out == expected, f"{variant}:\n{out!r}\nplain:\n{expected!r}"


def test_non_ascii_names_train_on_their_own_characters(tmp_path, capsys):
    names = ["민준", "서연", "하은", "josé", "zoë", "ångström", "émile", "łucja", "søren"]
    text = "\ufeff" + "".join(f" {name} \r\n" for name in names)  # BOM, spaces, \r\n too
    path = write(tmp_path / "intl.txt", text)
    docs = quietly(microgpt.load_docs, str(path))
    assert sorted(docs) == sorted(names), docs
    chars, bos, _ = quietly(microgpt.tokenizer, docs)
    assert chars == sorted(set("".join(names))), chars
    code, out, err = run_main(capsys, ["--input", str(path), "--num-steps", "5",
                                       "--num-samples", "8", "--temperature", "2"])
    assert code == 0, f"exit {code}, stderr {err!r}"
    assert f"num docs: {len(names)}\nvocab size: {bos + 1}\n" in out, out
    samples = sample_texts(out)
    assert len(samples) == 8, out
    strangers = {ch for text in samples for ch in text} - set(chars)
    assert not strangers, f"characters outside the vocabulary {strangers} in {samples}"


# Document lengths: longer than block_size, a single document, a single character ---------------

def test_long_document_trains_on_its_first_block_size_positions(monkeypatch, capsys):
    configure(block_size=4, n_embd=8, n_head=2, num_steps=2)
    chars = list("abcdefghij")
    positions, real_gpt = [], microgpt.gpt

    def recording_gpt(token_id, pos_id, *rest):
        positions.append(pos_id)
        return real_gpt(token_id, pos_id, *rest)

    monkeypatch.setattr(microgpt, "gpt", recording_gpt)

    def trained_on(doc):
        """What two training steps on `doc` print, and every parameter's bits afterwards (Adam's
        steps depend on each gradient's size, so equal bits mean equal gradients)."""
        random.seed(0)
        state_dict, params = quietly(microgpt.init_params, len(chars) + 1)
        microgpt.train([doc], chars, len(chars), state_dict, params, [])
        return capsys.readouterr().out, [p.data for p in params]

    long_doc = "abcdefghij" * 3  # 30 characters, for 4 positions
    (long_out, long_params), (cut_out, cut_params) = trained_on(long_doc), trained_on(long_doc[:4])
    assert long_out == cut_out, f"30 characters printed {long_out!r}, the first 4 {cut_out!r}"
    diffs = [(i, a, b) for i, (a, b) in enumerate(zip(long_params, cut_params)) if a != b]
    assert not diffs, f"{len(diffs)} parameters differ, first (index, long, cut): {diffs[:3]}"
    assert positions == [0, 1, 2, 3] * 4, positions
    # Sampling stops at block_size tokens even if BOS never comes: draw token 0 every time.
    positions.clear()
    monkeypatch.setattr(microgpt.random, "choices", lambda population, weights: [0])
    configure(num_samples=1)
    state_dict, _ = quietly(microgpt.init_params, len(chars) + 1)
    microgpt.inference(chars, len(chars), len(chars) + 1, state_dict, [])
    assert capsys.readouterr().out == HEADER + "sample  1: aaaa\n"
    assert positions == [0, 1, 2, 3], positions


@pytest.mark.parametrize("text, extra", [
    ("emma\n", []),
    ("a\n", []),
    ("a\n", ["--block-size", "1"]),
    ("a\nbb\nabcdefghijklmnopqrstuvwxyz\n", ["--block-size", "4"]),
], ids=["single-document", "one-character", "one-character-block-1", "longer-than-block"])
def test_tiny_and_long_documents_run(text, extra, tmp_path, capsys):
    path = write(tmp_path / "docs.txt", text)
    code, out, err = run_main(capsys, ["--input", str(path), "--num-steps", "3",
                                       "--num-samples", "3", *extra])
    assert code == 0, f"exit {code}, stderr {err!r}"
    docs = text.split()
    assert out.startswith(f"num docs: {len(docs)}\n"), out
    assert "step    3 /    3 | loss " in out, out
    samples = sample_texts(out)
    assert len(samples) == 3 and set("".join(samples)) <= set("".join(docs)), samples
    block_size = int(extra[1]) if extra else 16
    assert all(len(s) <= block_size for s in samples), samples


# Settings: invalid ones are usage errors; extreme valid ones run --------------------------------

INVALID_SETTINGS = [
    ["--n-embd", "10", "--n-head", "4"], ["--n-embd", "16", "--n-head", "32"],
    ["--n-layer", "0"], ["--n-layer", "-1"], ["--n-embd", "0"], ["--n-head", "0"],
    ["--block-size", "0"], ["--num-steps", "-1"], ["--num-samples", "-1"],
    ["--temperature", "0"], ["--temperature", "-0.5"], ["--temperature", "nan"],
    ["--temperature", "inf"], ["--temperature", "-inf"],
    ["--learning-rate", "-0.01"], ["--learning-rate", "nan"], ["--learning-rate", "inf"],
    ["--seed", "abc"], ["--n-layer", "1.5"], ["--temperature", "x"], ["--num-steps", ""],
    ["--n-layer", "-1" + "0" * 400], ["--input", ""], ["--save", ""], ["--load", ""],
    ["--inspect", ""],
]


@pytest.mark.parametrize("args", INVALID_SETTINGS, ids=flags_id)
def test_invalid_setting_is_a_usage_error(args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no input.txt: if the settings were accepted, this would show
    code, out, err = run_main(capsys, args)
    evidence = f"{args}: exit {code}, stdout {out!r}, stderr {err!r}"
    assert code == 2 and out == "", evidence
    assert err.startswith("usage: ") and "Traceback" not in err, evidence
    assert args[0] in err, evidence  # the message names the flag at fault


def test_invalid_setting_exits_2_as_a_process_without_traceback(tmp_path):
    result = run_script(["--n-embd", "10", "--n-head", "4"], cwd=tmp_path)
    evidence = f"exit {result.returncode}, stderr {result.stderr!r}"
    assert result.returncode == 2 and result.stdout == b"", evidence
    assert result.stderr.startswith(b"usage: ") and b"Traceback" not in result.stderr, evidence
    assert b"divisible" in result.stderr, evidence


@pytest.mark.parametrize("args, steps, samples", [
    (["--num-steps", "0"], 0, 2),
    (["--num-samples", "0"], 2, 0),
    (["--num-steps", "0", "--num-samples", "0"], 0, 0),
    (["--learning-rate", "0"], 2, 2),
    (["--n-layer", "1", "--n-embd", "1", "--n-head", "1", "--block-size", "1"], 2, 2),
], ids=flags_id)
def test_boundary_settings_are_valid_and_run(args, steps, samples, tmp_path, capsys):
    path = write(tmp_path / "names.txt", PLAIN_TEXT)
    code, out, err = run_main(capsys, ["--input", str(path), *FAST, *args])
    assert code == 0, f"exit {code}, stderr {err!r}"
    assert len(re.findall(r"step +\d+ / +\d+ \| loss \d", out)) == steps, out
    assert "\n--- inference (new, hallucinated names) ---\n" in out, out
    assert len(sample_texts(out)) == samples, out


def test_deep_and_long_settings_run_without_recursion_error(tmp_path, capsys):
    # 8 layers x 64 positions makes a deep graph; a narrow model keeps it under a second.
    path = write(tmp_path / "long.txt", "abcdefghij" * 10 + "\n" + "klmnopqrst" * 8 + "\n")
    code, out, err = run_main(capsys, ["--input", str(path), "--n-layer", "8", "--block-size",
                                       "64", "--n-embd", "4", "--n-head", "1",
                                       "--num-steps", "1", "--num-samples", "1"])
    assert code == 0, f"exit {code}, stderr {err!r}"
    assert "step    1 /    1 | loss " in out and len(sample_texts(out)) == 1, out


SHIPPED_HEADER = "num docs: 32033\nvocab size: 27\nnum params: 4192\n"


def complete_step_lines(out):
    """The numbers of the step lines printed in full (each ends in \\r), in order."""
    return [int(n) for n in re.findall(r"step +(\d+) / +\d+ \| loss \d+\.\d{4}\r", out)]


@pytest.mark.parametrize("args, step, why", [
    # Adam at learning rate 1 drives a probability to exactly 0 in step 2: log(0)
    (["--learning-rate", "1", "--num-steps", "50"], 2, "math domain error"),
    # Step 1's loss is finite and its update moves weights by ~1e300; step 2's loss is still
    # finite, but its update leaves weights inf or nan: step 3's loss is nan
    (["--learning-rate", "1e300", "--num-steps", "3"], 3, "the loss is nan"),
], ids=["learning rate 1", "learning rate 1e300"])
def test_numbers_blowing_up_in_training_name_the_step_and_blame_the_learning_rate(
        args, step, why, capsys):
    code, out, err = run_main(capsys, ["--input", INPUT, "--num-samples", "0", *args])
    expected = (f"microgpt: numbers out of range at step {step} ({why}): "
                f"try a smaller --learning-rate\n")
    evidence = f"exit {code}, stderr {err!r}, stdout {out!r}"
    assert code == 1 and err == expected, f"{evidence}\nexpected stderr {expected!r}"
    # Steps 1 .. step-1 were printed in full; the failing step's line is never printed, nor
    # anything after it but the newline that ends the last step line (in a terminal, the error
    # would otherwise be written over it).
    assert complete_step_lines(out) == list(range(1, step)), evidence
    assert out.startswith(SHIPPED_HEADER) and out.count("step ") == step - 1, evidence
    assert out.endswith("\r\n") and HEADER.strip() not in out, evidence


def test_sampling_from_blown_up_weights_blames_the_learning_rate_not_the_temperature(
        monkeypatch, capsys):
    largest, real_inference = [], microgpt.inference

    def recording_inference(uchars, BOS, vocab_size, state_dict, samples):
        largest.append(max(abs(p.data) for mat in state_dict.values() for row in mat
                           for p in row))
        return real_inference(uchars, BOS, vocab_size, state_dict, samples)

    monkeypatch.setattr(microgpt, "inference", recording_inference)
    code, out, err = run_main(capsys, ["--input", INPUT, "--learning-rate", "1e300",
                                       "--num-steps", "1", "--num-samples", "2"])
    # The temperature is the default 0.5; what is wrong is the model: weights ~1e300 overflow
    # in rmsnorm, and the logits, so the probabilities, become nan (on every Python: inference()
    # checks them, where Python 3.9's random.choices would draw from nan weights without a word).
    expected = ("microgpt: numbers out of range during sampling (the logits are not finite): "
                "try a smaller --learning-rate\n")
    evidence = f"exit {code}, stderr {err!r}, stdout {out!r}"
    assert code == 1 and err == expected, f"{evidence}\nexpected stderr {expected!r}"
    # Step 1's loss was finite (its line is printed in full); its update blew the weights up.
    assert complete_step_lines(out) == [1] and HEADER in out, evidence
    assert len(largest) == 1 and 5e299 < largest[0] < 2e300, (
        f"largest |weight| when sampling started: {largest}, expected ~1e300")


def test_too_cold_sampling_from_a_sane_model_blames_the_temperature(tmp_path, capsys):
    path = write(tmp_path / "names.txt", PLAIN_TEXT)
    args = ["--input", str(path), "--num-steps", "1", "--num-samples", "1"]
    code, out, err = run_main(capsys, [*args, "--temperature", "1e-320"])
    # logit / 1e-320 is logit * 1e-320 ** -1, and 1e-320 ** -1 overflows: CPython raises
    # OverflowError(ERANGE, its strerror)
    expected = (f"microgpt: numbers out of range during sampling ({os.strerror(errno.ERANGE)}): "
                f"try a larger --temperature")
    evidence = f"exit {code}, stderr {err!r}, stdout {out!r}"
    assert code == 1 and split_stderr(err)[1] == [expected], (
        f"{evidence}\nexpected stderr {expected!r}")
    assert complete_step_lines(out) == [1] and out.endswith(HEADER), evidence
    # The model is sane: at the default temperature the same run samples.
    code, out, err = run_main(capsys, args)
    assert code == 0 and split_stderr(err)[1] == [] and len(sample_texts(out)) == 1, (
        f"--temperature 0.5: exit {code}, stderr {err!r}, stdout {out!r}")


# Ctrl-C: the line names the step being worked on ------------------------------------------------

TINY_BLOCK_SIZE = int(TINY_MODEL[TINY_MODEL.index("--block-size") + 1])


def gpt_calls_per_step(steps):
    """How many times train() calls gpt() in each of its first `steps` steps on NAMES, seed 42:
    once per position predicted, min(block_size, len(doc) + 1), the docs shuffled by seed 42."""
    docs = list(NAMES)
    random.Random(42).shuffle(docs)
    return [min(TINY_BLOCK_SIZE, len(doc) + 1) for doc in docs[:steps]]


def run_main_interrupted_at_gpt_call(at_call, argv, monkeypatch, capsys):
    """run_main, with the `at_call`-th call of gpt() (from 1) raising KeyboardInterrupt."""
    calls, real_gpt = [], microgpt.gpt

    def interrupted_gpt(*args):
        calls.append(len(calls) + 1)
        if len(calls) == at_call:
            raise KeyboardInterrupt
        return real_gpt(*args)

    monkeypatch.setattr(microgpt, "gpt", interrupted_gpt)
    try:
        result = run_main(capsys, argv)
    except KeyboardInterrupt:
        pytest.fail(f"KeyboardInterrupt at gpt() call {at_call} escaped main()")
    assert len(calls) == at_call, f"gpt() was called {len(calls)} times, not {at_call}"
    return result


@pytest.mark.parametrize("call, step", [
    ("last of step 2", 2), ("first of step 3", 3), ("last of step 3", 3), ("first of step 4", 4)])
def test_ctrl_c_in_training_names_the_step_whose_forward_pass_it_hit(call, step, tmp_path,
                                                                      monkeypatch, capsys):
    path = write(tmp_path / "names.txt", PLAIN_TEXT)
    per_step = gpt_calls_per_step(4)
    at_call = sum(per_step[:step - 1]) + (1 if call.startswith("first") else per_step[step - 1])
    code, out, err = run_main_interrupted_at_gpt_call(
        at_call, ["--input", str(path), *TINY_MODEL, "--num-steps", "5", "--num-samples", "1"],
        monkeypatch, capsys)
    evidence = (f"gpt() call {at_call} ({call}; calls per step {per_step}): exit {code}, "
                f"stderr {err!r}, stdout {out!r}")
    assert code == 130 and err == f"microgpt: interrupted at step {step}\n", evidence
    assert complete_step_lines(out) == list(range(1, step)), evidence


def test_ctrl_c_in_sampling_says_during_sampling(tmp_path, monkeypatch, capsys):
    path = write(tmp_path / "names.txt", PLAIN_TEXT)
    at_call = sum(gpt_calls_per_step(2)) + 3  # the third call after training's last
    code, out, err = run_main_interrupted_at_gpt_call(
        at_call, ["--input", str(path), *TINY_MODEL, "--num-steps", "2", "--num-samples", "3"],
        monkeypatch, capsys)
    evidence = f"gpt() call {at_call}: exit {code}, stderr {err!r}, stdout {out!r}"
    assert code == 130 and split_stderr(err)[1] == ["microgpt: interrupted during sampling"], (
        evidence)
    assert complete_step_lines(out) == [1, 2] and HEADER in out, evidence


# Ctrl-C and a closed stdout: real processes, real signals, real pipes --------------------------

def interrupt_when_printed(marker, args, tmp_path):
    """Run microgpt unbuffered, send SIGINT once `marker` is on stdout: (code, stdout, stderr)."""
    names = write(tmp_path / "names.txt", PLAIN_TEXT)
    # A shell's background job ignores SIGINT, and Python then leaves it ignored: undo that.
    proc = subprocess.Popen([sys.executable, "-u", str(SCRIPT), "--input", str(names), *args],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen, deadline = b"", time.monotonic() + 60
        while marker not in seen and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 1)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
        assert marker in seen, f"no {marker!r} on stdout: {seen[-300:]!r}"
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, seen + rest, err.decode()


def test_ctrl_c_during_sampling_exits_130(tmp_path):
    code, out, err = interrupt_when_printed(
        b"sample", ["--num-steps", "0", "--num-samples", "100000"], tmp_path)
    evidence = f"exit {code}, stderr {err!r}, stdout ends {out[-200:]!r}"
    assert code == 130 and err == "microgpt: interrupted during sampling\n", evidence


def python_command(buffering):
    """The interpreter with stdout buffered as a user's would be, whatever this shell sets."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return [sys.executable, *(["-u"] if buffering == "unbuffered" else [])], env


@pytest.mark.parametrize("buffering", ["buffered", "unbuffered"])
def test_output_into_a_pipe_closed_by_head_exits_quietly(buffering, tmp_path):
    # Long output: head leaves after 3 lines, long before the run ends; a later write fails.
    names = write(tmp_path / "names.txt", PLAIN_TEXT)
    python, env = python_command(buffering)
    pipeline = 'set -o pipefail; "$@" | head -3'
    result = subprocess.run(["bash", "-c", pipeline, "bash", *python, str(SCRIPT), "--input",
                             str(names), *TINY_MODEL, "--num-steps", "100000"], cwd=tmp_path,
                            env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    evidence = f"exit {result.returncode}, stderr {result.stderr!r}"
    assert result.stderr == b"" and result.returncode == 141, evidence
    assert result.stdout.startswith(b"num docs: 16\nvocab size: ") and \
        result.stdout.count(b"\n") == 3, result.stdout


def run_with_stdout_closed(args, buffering, tmp_path):
    """microgpt on NAMES with a pipe for stdout whose reader has gone: (exit status, stderr)."""
    names = write(tmp_path / "names.txt", PLAIN_TEXT)
    python, env = python_command(buffering)
    proc = subprocess.Popen([*python, str(SCRIPT), "--input", str(names), *args], cwd=tmp_path,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdout.close()
        err = proc.stderr.read().decode()
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    return code, err


@pytest.mark.parametrize("buffering", ["buffered", "unbuffered"])
def test_output_into_a_closed_pipe_exits_quietly(buffering, tmp_path):
    # Short output, reader gone before the program writes anything. Buffered, the whole output
    # waits for the final flush, so that is where the write fails, after training and sampling
    # (their reports are on stderr); unbuffered, the first print fails.
    code, err = run_with_stdout_closed(FAST, buffering, tmp_path)
    reports, errors = split_stderr(err)
    assert errors == [] and code == 141, f"exit {code}, stderr {err!r}"
    assert len(reports) == (2 if buffering == "buffered" else 0), f"stderr {err!r}"


def test_a_closed_pipe_still_puts_everything_back(monkeypatch, capsys, tmp_path):
    # In this process: standard output raises what a closed pipe raises, at the first write.
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

        def flush(self):
            pass

    names = write(tmp_path / "names.txt", PLAIN_TEXT)
    closed = ClosedPipe()
    plain_linear = microgpt.linear
    monkeypatch.setattr(sys, "stdout", closed)
    with pytest.raises(SystemExit) as exit_info:
        microgpt.main(["--input", str(names), *FAST, "--n-embd", "8", "--n-head", "2"])
    assert exit_info.value.code == 141
    assert (microgpt.n_embd, microgpt.input_path) == (16, "input.txt"), "settings left behind"
    assert sys.stdout is closed, "standard output was not put back"
    assert microgpt.linear is plain_linear, "the Efficiency section was left in place"
    assert gc.isenabled(), "the cycle collector was left off"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("buffering", ["buffered", "unbuffered"])
@pytest.mark.parametrize("run", ["trains and samples", "fails at step 3", "--help"])
def test_a_full_disk_is_reported_as_the_output_that_failed(run, buffering, tmp_path):
    # However the run ends, what it printed reaches the output or fails in one line, not in
    # Python's "Exception ignored" at exit. (Buffered, the output fails at the end; unbuffered,
    # at the first line: then the training failure never comes.)
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    names = write(tmp_path / "names.txt", PLAIN_TEXT)
    args = {"trains and samples": FAST, "fails at step 3": ["--num-steps", "5",
                                                            "--learning-rate", "1e300"],
            "--help": ["--help"]}[run]
    python, env = python_command(buffering)
    with open("/dev/full", "wb") as full:
        result = subprocess.run([*python, str(SCRIPT), "--input", str(names), *args],
                                cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=full,
                                stderr=subprocess.PIPE, timeout=60)
    err = result.stderr.decode()
    evidence = f"exit {result.returncode}, stderr {err!r}"
    assert result.returncode == 1 and "Traceback" not in err and "ignored" not in err, evidence
    assert split_stderr(err)[1] == [
        "microgpt: cannot write the output: no space left on device"], evidence


def test_a_pipe_closed_before_a_failure_is_still_quiet(tmp_path):
    # Sampling fails (too cold); the output it would have shown has nowhere to go: say nothing
    code, err = run_with_stdout_closed(["--num-steps", "1", "--temperature", "1e-320"],
                                       "buffered", tmp_path)
    assert code == 141 and err == "", f"exit {code}, stderr {err!r}"


@pytest.mark.parametrize("stderr", ["full", "closed"])
def test_a_full_or_closed_stderr_does_not_stop_the_run(stderr, tmp_path):
    names = write(tmp_path / "names.txt", PLAIN_TEXT)
    expected = run_script(["--input", str(names), *FAST], tmp_path).stdout
    redirect = "2>/dev/full" if stderr == "full" else "2>&-"
    result = subprocess.run(["bash", "-c", f'"$@" {redirect}', "bash", sys.executable,
                             str(SCRIPT), "--input", str(names), *FAST], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, timeout=60)
    assert result.returncode == 0 and result.stdout == expected, result


def test_running_out_of_memory_is_one_line(monkeypatch, capsys, tmp_path):
    names = write(tmp_path / "names.txt", PLAIN_TEXT)

    def too_large(vocab_size):
        raise MemoryError

    monkeypatch.setattr(microgpt, "init_params", too_large)
    line = assert_one_error_line(*run_main(capsys, ["--input", str(names), *FAST]),
                                 expected_out="num docs: 16\nvocab size: 19\n")
    assert line == "microgpt: out of memory: try a smaller --n-layer, --n-embd or --block-size"


def test_unprintable_sample_is_one_line_about_the_encoding_not_the_numbers(tmp_path):
    # A UnicodeEncodeError is a ValueError; it must not be reported as numbers out of range.
    path = write(tmp_path / "hangul.txt", "민준\n서연\n하은\n")
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    result = run_script(["--input", str(path), *FAST], tmp_path, env=env)
    err = result.stderr.decode()
    evidence = f"exit {result.returncode}, stderr {err!r}"
    assert result.returncode == 1 and "Traceback" not in err, evidence
    # The first sample starts with 서 (U+C11C); the ASCII stderr shows it as an escape.
    assert split_stderr(err)[1] == [
        "microgpt: ascii output cannot show '\\uc11c': PYTHONIOENCODING=utf-8"], evidence


# A bug is not the user's: it keeps its traceback ------------------------------------------------

@pytest.mark.parametrize("bug", ["TypeError", "ValueError", "ZeroDivisionError in training",
                                 "ZeroDivisionError in the plumbing"])
def test_a_bug_keeps_its_traceback(bug, monkeypatch, capsys, tmp_path):
    names = write(tmp_path / "names.txt", PLAIN_TEXT)
    if bug == "TypeError":  # gpt() returning nothing: 'NoneType' object is not iterable
        monkeypatch.setattr(microgpt, "gpt", lambda *args: None)
        expected = TypeError
    elif bug == "ValueError":  # a ValueError that is not about numbers, in training
        def broken_softmax(logits):
            raise ValueError("too many values to unpack")
        monkeypatch.setitem(microgpt.FAST_FUNCTIONS, "softmax", broken_softmax)
        expected = ValueError
    elif bug == "ZeroDivisionError in training":  # not a number out of range: a bug
        def dividing_softmax(logits):
            return 1 / 0
        monkeypatch.setitem(microgpt.FAST_FUNCTIONS, "softmax", dividing_softmax)
        expected = ZeroDivisionError
    else:  # an ArithmeticError outside the phases that expect one
        monkeypatch.setattr(microgpt, "report_trend", lambda step_losses: 1 / 0)
        expected = ZeroDivisionError
    with pytest.raises(expected):
        microgpt.main(["--input", str(names), "--num-steps", "3", "--num-samples", "1"])
    assert "numbers out of range" not in capsys.readouterr().err


# --plain: build_topo's recursion, on a graph deeper than Python allows --------------------------

def test_a_graph_too_deep_for_plain_is_one_line(monkeypatch, capsys, tmp_path):
    # The default shape needs a recursion limit of about 200 (measured on the longest name), and
    # each layer about 150 more: past Python's 1000 from 7 layers. Here the limit comes down
    # to the graph instead.
    names = write(tmp_path / "names.txt", PLAIN_TEXT)
    depth = len(inspect.stack())
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 120)
    try:
        code, out, err = run_main(capsys, ["--input", str(names), "--plain", "--num-steps", "2",
                                           "--num-samples", "0"])
    finally:
        sys.setrecursionlimit(limit)
    line = assert_one_error_line(code, out, err, expected_out=out)
    assert line == ("microgpt: at step 1, the graph is too deep for the recursive build_topo of "
                    "--plain: run without --plain"), line
    # Without --plain, the same run sorts the graph without recursion
    sys.setrecursionlimit(depth + 120)
    try:
        code, out, err = run_main(capsys, ["--input", str(names), "--num-steps", "2",
                                           "--num-samples", "0"])
    finally:
        sys.setrecursionlimit(limit)
    assert code == 0, err
