"""Errors: anything a user can get wrong ends in exactly one line on stderr that starts with
"microgpt: ", an exit status other than 0, stdout as far as the run got, nothing half-written and
never a traceback; a usage error is argparse's (exit 2); a bug keeps its traceback. And odd but
valid text (\\r\\n, a BOM, spaces, Hangul, long or one-letter names) trains as it should.

Most runs are in this process (run_main) on a small names file; the claims about the process
itself (signals, pipes, file descriptors, memory limits, tracebacks) run the real program. No test
needs the network: downloads come from a server on 127.0.0.1 that the test starts itself, or fail
at the suite's closed proxy. A claim that holds only on POSIX or on Linux (a signal, a resource
limit, a file mode, an errno that Windows gives otherwise, /dev/full) says so with a mark from
helpers, and is skipped elsewhere with that reason."""
import contextlib
import errno
import http.server
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading

import pytest

import microgpt
from helpers import (HEADER, NAMES, NAMES_TEXT, SCRIPT, assert_one_error_line, configure,
                     copy_of_microgpt, needs_dev_full, needs_linux, needs_posix, new_model,
                     printed, run_main, run_script, sample_texts, write)

TINY = ["--n-embd", "4", "--n-head", "1", "--block-size", "8"]  # a few milliseconds a step
FAST = ["--num-steps", "3", "--num-samples", "3", *TINY]
PYPY = sys.implementation.name == "pypy"


def step_numbers(out):
    """The step lines printed in full (each ends in \\r), as numbers, in order."""
    return [int(n) for n in re.findall(r"step +(\d+) / +\d+ \| loss \d+\.\d{4}\r", out)]


# The input file ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, name, reason", [
    pytest.param(lambda folder: None, "missing.txt", "no such file or folder", id="missing"),
    pytest.param(lambda folder: (folder / "names").mkdir(), "names", "a folder, not a file",
                 id="folder", marks=needs_posix("a folder opened as a file is EISDIR (Windows "
                                                "refuses it with EACCES, permission denied)")),
])
def test_an_input_that_is_not_a_file_is_one_line(make, name, reason, tmp_path, monkeypatch,
                                                 capsys):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    line = assert_one_error_line(*run_main(capsys, ["--input", name, *FAST]))
    # The claim is the whole line: the file as given, and the program's own words for why
    assert line == f"microgpt: {name}: {reason}", line


@pytest.mark.parametrize("data", [
    b"emma\n\xffva\n",                       # a byte that is never UTF-8
    "zoë\némile\n".encode("latin-1"),        # Latin-1, as an old editor saves it
    "emma\nzo".encode() + b"\xc3",           # cut in the middle of a character
    b"\xef\xbb\xbfemma\n\xed\xa0\x80\n",     # a BOM, then a UTF-16 surrogate
], ids=["0xff", "latin-1", "cut-character", "surrogate"])
def test_an_input_that_is_not_utf8_is_one_line(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "bad.txt", data)
    line = assert_one_error_line(*run_main(capsys, ["--input", "bad.txt", *FAST]))
    assert line == "microgpt: bad.txt: not UTF-8 text", line


@pytest.mark.parametrize("data", [b"", b"\n\n\n", b"  \n\t\n\r\n \r\n", b"\xef\xbb\xbf\n \n"],
                         ids=["empty", "newlines", "blanks", "bom-only"])
def test_an_input_without_documents_is_one_line(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "blank.txt", data)
    line = assert_one_error_line(*run_main(capsys, ["--input", "blank.txt", *FAST]),
                                 expected_out="num docs: 0\n")
    assert line == "microgpt: blank.txt: no documents: it is empty, or only blank lines", line


@needs_posix("file modes (chmod 000 takes reading away)")
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads a chmod 000 file anyway (the next test covers the line)")
def test_an_input_you_cannot_read_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "secret.txt", NAMES_TEXT).chmod(0)
    line = assert_one_error_line(*run_main(capsys, ["--input", "secret.txt", *FAST]))
    assert line == "microgpt: secret.txt: permission denied", line


def test_an_input_that_open_refuses_is_one_line(tmp_path, monkeypatch, capsys):
    # What chmod 000 does to anyone but root, for runs as root: microgpt's open() refuses the
    # file with the error the system gives (EACCES), so the line comes from the errno alone.
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "secret.txt", NAMES_TEXT)

    def refusing_open(file, *args, **kwargs):
        raise PermissionError(errno.EACCES, "refused by the test", file)

    monkeypatch.setattr(microgpt, "open", refusing_open, raising=False)
    line = assert_one_error_line(*run_main(capsys, ["--input", "secret.txt", *FAST]))
    assert line == "microgpt: secret.txt: permission denied", line


# The download of input.txt -----------------------------------------------------------------------

@contextlib.contextmanager
def serving(status, body, length=None):
    """An HTTP server on 127.0.0.1 that answers every GET with status and body, in a thread:
    yields (url, the paths asked for). length, if given, is the Content-Length it promises
    instead of the body's: more than it sends cuts the download off midway."""
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # not on the test's stderr
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    # (polled every 0.05 s for the shutdown, which the default would make wait up to 0.5 s)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/names.txt", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def local_downloads(monkeypatch):
    """Requests to 127.0.0.1 go there, not to the suite's closed proxy."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def test_a_missing_input_txt_is_downloaded_byte_for_byte_and_the_run_goes_on(
        tmp_path, monkeypatch, capsys, local_downloads):
    monkeypatch.chdir(tmp_path)
    body = "\ufeff".encode() + NAMES_TEXT.replace("\n", "\r\n").encode()  # bytes to keep as is
    with serving(200, body) as (url, asked):
        monkeypatch.setattr(microgpt, "names_url", url)
        code, out, err = run_main(capsys, ["--num-steps", "1", "--num-samples", "1"])
        assert code == 0, f"exit {code}, stderr {err!r}"
        assert os.listdir(tmp_path) == ["input.txt"], os.listdir(tmp_path)  # and no part file
        assert (tmp_path / "input.txt").read_bytes() == body
        assert out.startswith(f"num docs: {len(NAMES)}\n") and HEADER in out, out
        code, again, err = run_main(capsys, ["--num-steps", "1", "--num-samples", "1"])
    assert code == 0 and again == out, f"exit {code}, stderr {err!r}, stdout {again!r}"
    assert asked == ["/names.txt"], f"input.txt there, yet asked again: {asked}"


@pytest.mark.parametrize("name", ["missing.txt", "data/input.txt"])
def test_only_input_txt_is_downloaded(name, tmp_path, monkeypatch, capsys, local_downloads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with serving(200, NAMES_TEXT.encode()) as (url, asked):
        monkeypatch.setattr(microgpt, "names_url", url)
        line = assert_one_error_line(*run_main(capsys, ["--input", name, *FAST]))
    assert line == f"microgpt: {name}: no such file or folder", line
    assert asked == [], f"downloaded for --input {name}: {asked}"
    assert os.listdir(tmp_path) == ["data"] and os.listdir(tmp_path / "data") == []


@contextlib.contextmanager
def failing_download(kind):
    """A URL whose download fails in the way named, and the paths its server was asked for."""
    if kind == "404":
        with serving(404, b"no such file") as served:
            yield served
    elif kind == "cut off":  # promises twice what it sends, then closes the connection
        body = NAMES_TEXT.encode() * 50
        with serving(200, body, length=2 * len(body)) as served:
            yield served
    elif kind == "server down":  # a port that is bound, but where nobody listens: refused
        with socket.socket() as bound:
            bound.bind(("127.0.0.1", 0))
            yield f"http://127.0.0.1:{bound.getsockname()[1]}/names.txt", None
    else:  # "no network": the real URL, which the suite's proxy at a closed port refuses
        yield microgpt.names_url, None


@pytest.mark.parametrize("kind", ["404", "cut off", "server down", "no network"])
def test_a_failed_download_is_one_line_with_the_url_and_the_way_out_and_leaves_no_file(
        kind, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if kind != "no network":
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with failing_download(kind) as (url, asked):
        monkeypatch.setattr(microgpt, "names_url", url)
        line = assert_one_error_line(*run_main(capsys, FAST))
    assert line == f"microgpt: cannot download {url}: try --input FILE", line
    assert os.listdir(tmp_path) == [], f"left behind: {os.listdir(tmp_path)}"
    assert asked in (None, ["/names.txt"]), f"the server was asked for {asked}"


# Bad flags: argparse's usage error ---------------------------------------------------------------

# Each bad flag, and the last line of the usage error. "argument FLAG: " and "invalid number
# value" are argparse's words (the same from Python 3.9 to 3.13); the rest are the program's.
BAD_FLAGS = [
    (["--n-layer", "0"], "argument --n-layer: 0: not a number >= 1"),
    (["--n-embd", "0"], "argument --n-embd: 0: not a number >= 1"),
    (["--n-head", "0"], "argument --n-head: 0: not a number >= 1"),
    (["--block-size", "0"], "argument --block-size: 0: not a number >= 1"),
    (["--n-layer", "-2"], "argument --n-layer: -2: not a number >= 1"),
    (["--num-steps", "-1"], "argument --num-steps: -1: not a number >= 0"),
    (["--num-samples", "-1"], "argument --num-samples: -1: not a number >= 0"),
    (["--learning-rate", "-0.01"], "argument --learning-rate: -0.01: not a number >= 0"),
    (["--learning-rate", "nan"], "argument --learning-rate: nan: not a number >= 0"),
    (["--learning-rate", "inf"], "argument --learning-rate: inf: not a number >= 0"),
    (["--temperature", "0"], "argument --temperature: 0: not a number > 0"),
    (["--temperature", "-0.5"], "argument --temperature: -0.5: not a number > 0"),
    (["--temperature", "nan"], "argument --temperature: nan: not a number > 0"),
    (["--temperature", "inf"], "argument --temperature: inf: not a number > 0"),
    # (with a space, argparse would take -inf for a flag: "expected one argument")
    (["--temperature=-inf"], "argument --temperature: -inf: not a number > 0"),
    (["--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
    (["--n-layer", "1.5"], "argument --n-layer: invalid number value: '1.5'"),
    (["--num-steps", "inf"], "argument --num-steps: invalid number value: 'inf'"),
    (["--learning-rate", "fast"], "argument --learning-rate: invalid number value: 'fast'"),
    (["--input", ""], "--input must not be empty"),
    (["--prompt", ""], "--prompt must not be empty"),
    (["--inspect", ""], "--inspect must not be empty"),
    (["--save", ""], "--save must not be empty"),
    (["--n-embd", "10", "--n-head", "4"], "--n-embd must be divisible by --n-head"),
    (["--n-head", "3"], "--n-embd must be divisible by --n-head"),  # 16 by 3
]


@pytest.mark.parametrize("args, error", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_bad_flag_gets_argparses_usage_line(args, error, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no input.txt here: a run that went on would try to download
    code, out, err = run_main(capsys, args)
    evidence = f"{args}: exit {code}, stdout {out!r}, stderr {err!r}"
    assert code == 2 and out == "" and "Traceback" not in err, evidence
    assert err.startswith("usage: microgpt "), evidence
    assert err.splitlines()[-1] == f"microgpt: error: {error}", evidence
    assert os.listdir(tmp_path) == [], evidence


def test_a_bad_flag_gets_argparses_usage_line_as_a_real_program(tmp_path):
    result = run_script(["--n-embd", "10", "--n-head", "4"], cwd=tmp_path)
    err = result.stderr.decode()
    evidence = f"exit {result.returncode}, stdout {result.stdout!r}, stderr {err!r}"
    assert result.returncode == 2 and result.stdout == b"" and "Traceback" not in err, evidence
    assert err.startswith("usage: microgpt "), evidence
    assert err.splitlines()[-1] == "microgpt: error: --n-embd must be divisible by --n-head"


# Numbers that blow up ----------------------------------------------------------------------------

@pytest.mark.parametrize("rate, step", [("10", 2), ("1e300", 3)])
def test_a_huge_learning_rate_stops_training_with_one_line_naming_the_step(
        rate, step, tmp_path, capsys):
    # The steps are measured, the same on CPython and PyPy: at 10, step 1's update already makes
    # a probability 0 in step 2; at 1e300, step 2's loss is still finite, but step 3's is not.
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    code, out, err = run_main(capsys, ["--input", str(names), "--learning-rate", rate,
                                       "--num-steps", "20", "--num-samples", "1"])
    line = assert_one_error_line(code, out, err, expected_out=out)
    assert line == (f"microgpt: the model's numbers blew up at step {step}: "
                    "try a smaller --learning-rate"), line
    # stdout as far as the run got: every step before the one named, and no sampling
    assert step_numbers(out) == list(range(1, step)), out
    assert out.startswith(f"num docs: {len(NAMES)}\n") and HEADER not in out, out


def test_a_temperature_so_small_that_dividing_by_it_overflows_is_one_line(tmp_path, capsys):
    # 1e-320 is above 0, so a valid flag; but a logit / 1e-320 is logit * 1e-320 ** -1, and
    # 1e-320 ** -1 is larger than any float
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    code, out, err = run_main(capsys, ["--input", str(names), "--temperature", "1e-320",
                                       "--num-steps", "2", "--num-samples", "3"])
    line = assert_one_error_line(code, out, err, expected_out=out)
    assert line == "microgpt: a number too large for a float: try a larger --temperature", line
    assert step_numbers(out) == [1, 2] and out.endswith(HEADER), out  # trained; no sample


# Ctrl-C ------------------------------------------------------------------------------------------

def interrupted_when_printed(marker, args, folder):
    """The real program on NAMES, unbuffered, sent a real SIGINT once marker is on its stdout:
    (exit status, stdout, stderr)."""
    names = write(folder / "names.txt", NAMES_TEXT)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # A shell's background job starts with SIGINT ignored, and Python would leave it ignored:
    # the program gets SIGINT's default, as in a terminal.
    proc = subprocess.Popen([sys.executable, SCRIPT, "--input", str(names), *args], cwd=folder,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen = b""
        while marker not in seen:
            # (the 60 s are a safety net for a run that hangs, not a measure of speed)
            assert select.select([proc.stdout], [], [], 60)[0], f"silent: {seen[-200:]!r}"
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"the run ended before {marker!r}: {seen[-200:]!r}"
            seen += chunk
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return proc.returncode, seen + rest, err


@pytest.mark.parametrize("phase, marker, args", [
    ("training", b"step ", [*TINY, "--num-steps", "1000000"]),
    ("sampling", HEADER.encode(), [*TINY, "--num-steps", "0", "--num-samples", "1000000"]),
], ids=["training", "sampling"])
@needs_posix("a real SIGINT, sent once the output shows (preexec_fn, select() on a pipe)")
def test_ctrl_c_exits_130_with_one_line(phase, marker, args, tmp_path):
    code, out, err = interrupted_when_printed(marker, args, tmp_path)
    evidence = f"during {phase}: exit {code}, stderr {err!r}, stdout ends {out[-100:]!r}"
    assert code == 130 and err == b"microgpt: interrupted\n", evidence
    assert out.startswith(f"num docs: {len(NAMES)}\n".encode()) and marker in out, evidence


# The output and the error stream -----------------------------------------------------------------

def environment(buffering):
    """os.environ, with stdout buffered as a user's would be, or unbuffered."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if buffering == "unbuffered":
        env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.parametrize("buffering", ["buffered", "unbuffered"])
@needs_posix("a write to a pipe whose reader has gone fails with EPIPE (on Windows it can fail "
             "with EINVAL), and 141 is the status a shell gives SIGPIPE, 128 + 13")
def test_a_pipe_closed_by_its_reader_ends_the_run_quietly_with_141(buffering, tmp_path):
    # As `| head -1` does: read one line, close. Buffered, the first line comes with the first
    # 8 KB, and a later flush fails; unbuffered, the next print fails. Samples from a model of
    # one position are the cheapest output there is, some 18 bytes a draw.
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    proc = subprocess.Popen([sys.executable, SCRIPT, "--input", str(names), "--n-embd", "1",
                             "--n-head", "1", "--block-size", "1", "--num-steps", "0",
                             "--num-samples", "1000000"], cwd=tmp_path, env=environment(buffering),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert first == f"num docs: {len(NAMES)}\n".encode(), first
    assert code == 141 and err == b"", f"exit {code}, stderr {err!r}"


def run_with_streams(args, folder, stdout, stderr=subprocess.PIPE, preexec_fn=None, env=None):
    """The real program on NAMES with the standard streams given: the CompletedProcess."""
    names = write(folder / "names.txt", NAMES_TEXT)
    return subprocess.run([sys.executable, SCRIPT, "--input", str(names), *args], cwd=folder,
                          env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                          preexec_fn=preexec_fn, timeout=120)


@pytest.mark.parametrize("buffering", ["buffered", "unbuffered"])
@needs_dev_full
def test_a_full_disk_as_stdout_is_one_line_without_exception_ignored(buffering, tmp_path):
    # Buffered, the output fails at the flush at the end of the run; unbuffered, at its first
    # line. Either way one line, and no second failure as Python flushes again on its way out.
    with open("/dev/full", "wb") as full:  # (no training: no report on stderr)
        result = run_with_streams(["--num-steps", "0", "--num-samples", "0", "--held-out", "0"],
                                  tmp_path, full, env=environment(buffering))
    evidence = f"exit {result.returncode}, stderr {result.stderr!r}"
    assert result.returncode == 1, evidence
    assert result.stderr == b"microgpt: no space left on the disk\n", evidence


@pytest.mark.parametrize("stderr", [
    pytest.param("closed", marks=needs_posix("a program started with its stderr closed "
                                             "(preexec_fn)")),
    pytest.param("full", marks=needs_dev_full),
])
def test_a_closed_or_full_stderr_does_not_stop_the_run(stderr, tmp_path, capsys):
    # Training and sampling, so that the run has its three reports to give on stderr
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    code, expected, err = run_main(capsys, ["--input", str(names), *FAST])
    assert code == 0 and err.count("\n") == 3, f"exit {code}, stderr {err!r}"
    if stderr == "closed":
        result = run_with_streams(FAST, tmp_path, subprocess.PIPE, stderr=None,
                                  preexec_fn=lambda: os.close(2))
    else:
        with open("/dev/full", "wb") as full:
            result = run_with_streams(FAST, tmp_path, subprocess.PIPE, stderr=full)
    assert result.returncode == 0, f"stderr {stderr}: exit {result.returncode}"
    assert result.stdout == expected.encode(), f"{result.stdout!r}\n!=\n{expected!r}"


# Out of memory: a real MemoryError, under an address-space limit --------------------------------

# The program, run as a script, then its own peak address space (VmPeak) on stderr
WITH_PEAK = """import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open("/proc/self/status") as f:
        sys.stderr.write(f.read())
"""


@needs_linux("RLIMIT_AS, set in the child by preexec_fn, and /proc/self/status for the peak")
@pytest.mark.skipif(PYPY, reason="PyPy's GC aborts the process ('couldn't allocate the next "
                                 "arena') instead of raising MemoryError")
def test_running_out_of_memory_is_one_line(tmp_path):
    import resource
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    tiny = ["--input", str(names), "--num-steps", "2", "--num-samples", "1"]
    measured = subprocess.run([sys.executable, "-c", WITH_PEAK, SCRIPT, *tiny], cwd=tmp_path,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert measured.returncode == 0, measured.stderr.decode()
    peak = int(re.search(rb"VmPeak:\s+(\d+) kB", measured.stderr).group(1)) * 1024
    limit = 2 * peak  # room for the tiny run twice over

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def run(args):
        return subprocess.run([sys.executable, SCRIPT, *args], cwd=tmp_path, capture_output=True,
                              stdin=subprocess.DEVNULL, preexec_fn=limited, timeout=120)

    # A layer of 4096 x 4096 matrices is about 200 million Values: many GB, far past the limit
    result = run([*tiny, "--n-embd", "4096"])
    err = result.stderr.decode()
    evidence = f"tiny run's peak {peak} bytes: exit {result.returncode}, stderr {err!r}"
    assert result.returncode == 1 and "Traceback" not in err, evidence
    assert err == ("microgpt: out of memory: try a smaller --n-layer, --n-embd or "
                   "--block-size\n"), evidence
    # stdout as far as the run got: the data and the vocabulary, before the parameters (and so
    # the limit let the program start and read its data)
    assert result.stdout == f"num docs: {len(NAMES)}\nvocab size: 19\n".encode(), evidence


# A terminal that cannot show the samples ---------------------------------------------------------

HANGUL = ["민준", "서연", "하은", "지우", "도윤", "서윤", "하준", "지호"]


def test_an_ascii_terminal_and_hangul_samples_is_one_line_naming_the_fix(tmp_path):
    names = write(tmp_path / "hangul.txt", "".join(f"{name}\n" for name in HANGUL))
    args = ["--input", str(names), "--num-steps", "2", "--num-samples", "5"]
    full = run_script(args, tmp_path, env=dict(os.environ, PYTHONIOENCODING="utf-8"))
    assert full.returncode == 0, full.stderr.decode()
    result = run_script(args, tmp_path, env=dict(os.environ, PYTHONIOENCODING="ascii"))
    err = printed(result.stderr).decode("ascii")  # stderr in ASCII shows the letter as an escape
    out, full_out = printed(result.stdout), printed(full.stdout)
    evidence = f"exit {result.returncode}, stderr {err!r}, stdout {out!r}"
    assert result.returncode == 1 and "Traceback" not in err, evidence
    match = re.fullmatch(r"microgpt: the output cannot show '(\\u[0-9a-f]{4})': "
                         r"set PYTHONIOENCODING=utf-8\n", err)
    assert match, evidence
    letter = match.group(1).encode("ascii").decode("unicode_escape")
    # stdout as far as the run got: the UTF-8 run's output up to the sample that needs the
    # letter named, which is its first letter outside ASCII
    assert full_out.startswith(out), evidence
    next_line = full_out[len(out):].decode().split("\n")[0]
    assert next_line.startswith("sample "), (evidence, next_line)
    assert [ch for ch in next_line if ord(ch) > 127][0] == letter, (next_line, letter)


# A graph too deep for --plain's recursive build_topo ---------------------------------------------

@pytest.mark.skipif(PYPY, reason="PyPy bounds recursion by bytes of stack, which its JIT changes "
                    "as it warms up: how deep a graph the recursive build_topo takes is not fixed")
def test_a_graph_too_deep_for_plain_stops_in_build_topo_and_runs_without_plain(tmp_path, capsys):
    """--plain runs the post's recursive build_topo, which Python's recursion limit stops on a
    deep enough model: that is Python's RecursionError, raised in build_topo at the first step
    (the plain code's own limit, and what a recursive edit of a learner's would raise too, so
    it keeps its traceback). The same model runs without --plain."""
    # With one-letter names each step is short, but each layer deepens the graph by about 150
    # nodes (its sums of 16 and 64 products): 8 layers are past CPython's recursion limit of
    # 1,000 frames (7 are not, outside pytest)
    names = write(tmp_path / "letters.txt", "a\nb\nc\n")
    args = ["--input", str(names), "--n-layer", "8", "--num-steps", "3", "--num-samples", "1"]
    with pytest.raises(RecursionError) as raised:
        microgpt.main([*args, "--plain"])
    assert any(entry.name == "build_topo" for entry in raised.traceback), raised.traceback
    out = capsys.readouterr().out
    assert out.startswith("num docs: 3\n") and step_numbers(out) == [], out  # at the first step
    code, out, err = run_main(capsys, args)
    assert code == 0 and step_numbers(out) == [1, 2, 3], f"exit {code}, stderr {err!r}"


# A bug keeps its traceback -----------------------------------------------------------------------

def tokenizer_that_divides_by_zero(docs):
    return 1 / 0


def tokenizer_with_a_bad_unpack(docs):
    uchars, BOS = [1, 2, 3]
    return uchars, BOS


def tokenizer_that_recurses(docs):
    return tokenizer_that_recurses(docs)


# Each a real bug, raising a type that main() does not catch (it catches OSError, UnicodeError,
# FloatingPointError, OverflowError, MemoryError and KeyboardInterrupt)
BUGS = [
    (tokenizer_that_divides_by_zero, ZeroDivisionError),
    (tokenizer_with_a_bad_unpack, ValueError),
    (lambda docs: docs.uchars, AttributeError),
    (lambda docs: docs[len(docs)], IndexError),
    (lambda docs: {}["BOS"], KeyError),
    (lambda docs: len(docs) + "1", TypeError),
    (tokenizer_that_recurses, RecursionError),
]


@pytest.mark.parametrize("tokenizer, error", BUGS,
                         ids=[error.__name__.replace("Error", "") for _, error in BUGS])
def test_a_bug_keeps_its_traceback(tokenizer, error, tmp_path, monkeypatch, capsys):
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    monkeypatch.setattr(microgpt, "tokenizer", tokenizer)
    with pytest.raises(error):
        microgpt.main(["--input", str(names), *FAST])
    err = capsys.readouterr().err
    assert "microgpt:" not in err, f"a bug became a line: {err!r}"


def test_a_bug_keeps_its_traceback_as_a_real_program(tmp_path):
    def bug(source):  # the tokenizer divides by zero
        return source.replace("BOS = len(uchars)  #", "BOS = len(uchars) // 0  #", 1)

    script = copy_of_microgpt(tmp_path, bug)
    names = write(tmp_path / "names.txt", NAMES_TEXT)
    result = run_script(["--input", str(names), *FAST], tmp_path, script=script)
    err = result.stderr.decode()
    evidence = f"exit {result.returncode}, stderr {err!r}"
    assert result.returncode == 1 and err.startswith("Traceback"), evidence
    assert "in tokenizer" in err and err.splitlines()[-1].startswith("ZeroDivisionError"), (
        evidence)
    assert "microgpt:" not in err, evidence


# Odd but valid text ------------------------------------------------------------------------------

SAME_DOCS = {
    "crlf": NAMES_TEXT.replace("\n", "\r\n"),
    "bom": "\ufeff" + NAMES_TEXT,
    "bom-crlf": "\ufeff" + NAMES_TEXT.replace("\n", "\r\n"),
    "spaces": "".join(f"  {name} \t\n" for name in NAMES),
    "blank-lines": "\n \n" + NAMES_TEXT.replace("\n", "\n\t\n"),
    "no-final-newline": NAMES_TEXT.rstrip("\n"),
}


@pytest.mark.parametrize("variant", SAME_DOCS)
def test_line_endings_a_bom_and_spaces_give_the_plain_files_run(variant, tmp_path, capsys):
    plain = write(tmp_path / "plain.txt", NAMES_TEXT)
    odd = write(tmp_path / "odd.txt", SAME_DOCS[variant])
    code, out, err = run_main(capsys, ["--input", str(odd), *FAST])
    assert code == 0, f"exit {code}, stderr {err!r}"
    expected = run_main(capsys, ["--input", str(plain), *FAST])[1]
    assert out == expected, f"{variant}:\n{out!r}\nthe plain file:\n{expected!r}"


def test_hangul_names_train_on_their_own_characters(tmp_path, capsys):
    names = write(tmp_path / "hangul.txt", "\ufeff" + "".join(f" {n}\r\n" for n in HANGUL))
    letters = sorted(set("".join(HANGUL)))
    code, out, err = run_main(capsys, ["--input", str(names), *TINY, "--num-steps", "5",
                                       "--num-samples", "10", "--temperature", "2"])
    assert code == 0, f"exit {code}, stderr {err!r}"
    # A token per letter, and BOS: nothing for the BOM, the spaces or the \r
    assert out.startswith(f"num docs: {len(HANGUL)}\nvocab size: {len(letters) + 1}\n"), out
    samples = sample_texts(out)
    assert len(samples) == 10, out
    assert set("".join(samples)) <= set(letters), f"{samples}: letters outside {letters}"


def test_a_name_longer_than_block_size_trains_on_its_first_block_size_positions(
        monkeypatch, capsys, efficient):
    # Two training steps on "abcdefghij" and on "abcd", with block_size 4: the same 4
    # positions (BOS a b c -> a b c d), so the same losses printed and the same trained bits
    uchars = list("abcdefghij")
    positions, real_gpt = [], microgpt.gpt

    def recording_gpt(token_id, pos_id, *rest):
        positions.append(pos_id)
        return real_gpt(token_id, pos_id, *rest)

    monkeypatch.setattr(microgpt, "gpt", recording_gpt)

    def trained_on(doc):  # from the same first weights, for the tokens of a to j
        _, state_dict, params = new_model(uchars, block_size=4, n_embd=8, n_head=2)
        configure(num_steps=2)
        capsys.readouterr()
        microgpt.train([doc], uchars, len(uchars), state_dict, params)
        return capsys.readouterr().out, [p.data for p in params]

    long_out, long_params = trained_on("abcdefghij")
    assert positions == [0, 1, 2, 3] * 2, positions
    cut_out, cut_params = trained_on("abcd")
    assert long_out == cut_out, f"the long name printed {long_out!r}, the cut one {cut_out!r}"
    diffs = [(i, a, b) for i, (a, b) in enumerate(zip(long_params, cut_params)) if a != b]
    assert not diffs, f"{len(diffs)} parameters differ, first (index, long, cut): {diffs[:3]}"


@pytest.mark.parametrize("block_size", ["16", "1"])
def test_one_letter_names_run(block_size, tmp_path, capsys):
    names = write(tmp_path / "letters.txt", "a\nb\nc\n")
    code, out, err = run_main(capsys, ["--input", str(names), "--block-size", block_size,
                                       "--num-steps", "3", "--num-samples", "5"])
    assert code == 0, f"exit {code}, stderr {err!r}"
    assert out.startswith("num docs: 3\nvocab size: 4\n") and step_numbers(out) == [1, 2, 3], out
    samples = sample_texts(out)
    assert len(samples) == 5 and set("".join(samples)) <= set("abc"), samples
    assert all(len(sample) <= int(block_size) for sample in samples), samples
