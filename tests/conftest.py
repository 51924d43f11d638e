"""What the tests share: the real microgpt.py, imported from the repository root; its settings put
back after each test; helpers to run main() in this process; and the slow runs (1,000 training
steps, --plain, memory), started in the background when the first test starts, if this session
checks them.

microgpt's settings (n_layer, n_embd, ..., temperature) are module globals, as in the blog post;
main() sets them from the flags. Every test starts from the values written in the file."""
import contextlib
import glob
import io
import os
import random
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import microgpt  # noqa: E402

SCRIPT = os.path.join(REPO, "microgpt.py")
INPUT = os.path.join(REPO, "input.txt")
GOLDEN = os.path.join(REPO, "tests", "golden")
HEADER = "\n--- inference (new, hallucinated names) ---\n"

# A small list of names, for runs that need a data file but not input.txt's 32,033 names
NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "charlotte", "amelia",
         "liam", "noah", "william", "james", "oliver", "benjamin", "elijah", "lucas"]
NAMES_TEXT = "".join(f"{name}\n" for name in NAMES)


@pytest.fixture(autouse=True)
def default_settings():
    """Every setting as microgpt.py writes it, before and after each test."""
    microgpt.use_settings(microgpt.DEFAULTS)
    yield
    microgpt.use_settings(microgpt.DEFAULTS)


@pytest.fixture
def efficient():
    """The Efficiency section in place, as a run has it: for tests that run the model thousands
    of times (tests/test_efficiency.py proves it gives the plain code's numbers, bit for bit)."""
    with microgpt.efficiency():
        yield


def configure(**settings):
    """Set microgpt's settings for one test, as main() does from the flags."""
    microgpt.use_settings(settings)


def run_main(capsys, argv):
    """microgpt.main(argv) in this process: (exit status, stdout, stderr)."""
    try:
        microgpt.main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def run_script(args, cwd, python=sys.executable, env=None, timeout=120):
    """microgpt.py as a real process: the CompletedProcess, with stdout and stderr as bytes."""
    return subprocess.run([python, SCRIPT, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)


def write(path, data):
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def assert_one_error_line(code, out, err, expected_code=1, expected_out=""):
    """The error contract: the exit status, stdout as far as the run got, and on stderr one line
    that starts with 'microgpt: ' (never a traceback). Returns that line."""
    evidence = f"exit {code}, stdout {out!r}, stderr {err!r}"
    assert code == expected_code, evidence
    assert out == expected_out, evidence
    assert "Traceback" not in err, evidence
    assert len(err.splitlines()) == 1 and err.startswith("microgpt: "), evidence
    return err.rstrip("\n")


def split_stderr(err):
    """(the run's reports, every other line) of a run's stderr. The reports: the loss trend after
    training, and which samples are in the training data."""
    reports, others = [], []
    for line in err.splitlines():
        is_report = re.match(r"microgpt: (mean loss |none of the \d+ samples |\d+ of the \d+ "
                             r"samples (is|are) in the training data)", line)
        (reports if is_report else others).append(line)
    return reports, others


def sample_texts(out):
    """The names a run printed, in order."""
    return re.findall(r"^sample +\d+: (.*)$", out, flags=re.M)


def encode(doc, uchars):
    """A document's tokens as train() makes them: BOS, its characters' ids, BOS."""
    bos = len(uchars)
    return [bos] + [uchars.index(ch) for ch in doc] + [bos]


def doc_loss(tokens, state_dict):
    """The loss of one document, built as train() builds it, from microgpt's own functions."""
    n = min(microgpt.block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(microgpt.n_layer)], [[] for _ in range(microgpt.n_layer)]
    losses = []
    for pos in range(n):
        probs = microgpt.softmax(microgpt.gpt(tokens[pos], pos, keys, values, state_dict))
        losses.append(-probs[tokens[pos + 1]].log())
    return (1 / n) * sum(losses)


def new_model(docs, seed=0, **shape):
    """microgpt's settings for `shape`, the tokenizer of `docs` and fresh parameters, quietly:
    (uchars, state_dict, params)."""
    configure(**shape)
    random.seed(seed)
    uchars = sorted(set("".join(docs)))
    state_dict, params = quietly(microgpt.init_params, len(uchars) + 1)
    return uchars, state_dict, params


def quietly(function, *args):
    """function(*args) with what it prints thrown away (init_params prints 'num params')."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


# Interpreters and golden files ------------------------------------------------------------------

def works(python, expected):
    """Whether `python` runs and is the version expected, e.g. "cpython 3.11" or "pypy 3.9"."""
    check = "import platform as p; print(p.python_implementation().lower(), p.python_version())"
    try:
        out = subprocess.run([python, "-c", check], capture_output=True, timeout=30).stdout
    except OSError:
        return False
    return out.decode().startswith(expected + ".")


def find_pythons():
    """{label: path or None}: CPython 3.9 to 3.13 and PyPy, wherever this machine has them."""
    found = {}
    for minor in range(9, 14):
        candidates = sorted(glob.glob(f"/root/.pyenv/versions/3.{minor}.*/bin/python")) + [
            shutil.which(f"python3.{minor}")]
        found[f"CPython 3.{minor}"] = next(
            (c for c in candidates if c and works(c, f"cpython 3.{minor}")), None)
    pypy = shutil.which("pypy3")
    found["PyPy"] = pypy if pypy and works(pypy, "pypy 3") else None
    return found


def golden(name, kind):
    with open(os.path.join(GOLDEN, f"{name}.{kind}"), "rb") as f:
        return f.read()


def golden_args(name):
    return golden(name, "args").decode().split()


# The default run (1,000 steps), as README.md shows it: saved, and inspecting "emma"
DEFAULT_ARGS = ["--save", "model.json", "--inspect", "emma"]
DEFAULT_RUN_TESTS = ("test_the_default_run_prints_the_blog_posts_names",
                     "test_the_readme_shows_the_default_runs_reports_and_inspection")


# The slow runs ----------------------------------------------------------------------------------

class Background:
    """Runs started as the session's first test starts, each in a folder of its own (with a copy
    of input.txt, so nothing is downloaded), and collected by the test that checks it."""

    def __init__(self, folder):
        self.folder, self.runs, self.results = folder, {}, {}

    def start(self, name, python, args):
        workdir = os.path.join(self.folder, re.sub(r"\W+", "-", name))
        os.makedirs(workdir)
        shutil.copy(INPUT, os.path.join(workdir, "input.txt"))
        process = subprocess.Popen([python, *PEAK_MEMORY, SCRIPT, *args], cwd=workdir,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        self.runs[name] = (process, workdir)

    def result(self, name, python, args, timeout=600):
        """(stdout, stderr, exit status, peak memory in KB, folder) of the run `name`; started
        now if the session did not start it (when this test runs on its own). The peak is the
        run's own (VmHWM), from the last line of its stderr, which is taken off."""
        if name not in self.results:
            if name not in self.runs:
                self.start(name, python, args)
            process, workdir = self.runs.pop(name)
            try:
                out, err = process.communicate(timeout=timeout)
            finally:
                process.kill()
                process.wait()
            peak = 0
            if b"peak memory: " in err:
                err, _, peak = err.rpartition(b"peak memory: ")
            self.results[name] = (out, err, process.returncode, int(peak), workdir)
        return self.results[name]

    def stop(self):
        for process, _ in self.runs.values():
            process.kill()
            process.wait()


# How a slow run starts: microgpt.py as the main program, which at exit adds its peak memory to
# its stderr. That is the process's own high-water mark (VmHWM, Linux): the peak that the kernel
# reports to the parent (ru_maxrss) starts from the parent's own, at fork, and pytest's is large.
PEAK_MEMORY = ["-c", """if True:
    import atexit, runpy, sys

    def peak():
        try:
            with open("/proc/self/status") as f:
                kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
        except OSError:
            kb = 0
        sys.stderr.write(f"peak memory: {kb}")

    atexit.register(peak)
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""]


SLOW_RUNS = {}  # name: (the tests that check it, python, args); filled by the test modules


def slow_run(name, tests, python, args):
    """Declare a slow run: started in the background as the session starts, if one of `tests`
    (a test's name, or several) is in it."""
    SLOW_RUNS[name] = ({tests} if isinstance(tests, str) else set(tests), python, args)


@pytest.fixture(scope="session", autouse=True)
def background(request, tmp_path_factory):
    runs = Background(str(tmp_path_factory.mktemp("background")))
    tests = {item.name.split("[")[0] for item in request.session.items}
    for name, (checked_by, python, args) in SLOW_RUNS.items():
        if checked_by & tests and python is not None:
            runs.start(name, python, args)
    yield runs
    runs.stop()
