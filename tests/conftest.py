"""Shared setup: the tests import the real microgpt.py from the repository root.

microgpt's settings (n_layer, n_embd, ..., temperature) are module globals, as in the blog post,
and main() sets them from the flags. Every test starts from the defaults written in the file."""
import gc
import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import microgpt  # noqa: E402


@pytest.fixture(autouse=True)
def default_settings():
    """Put every setting back to the value written in microgpt.py, before and after each test."""
    vars(microgpt).update(microgpt.DEFAULTS)
    yield
    vars(microgpt).update(microgpt.DEFAULTS)
    gc.enable()  # main() switches CPython's cycle collector off for its run; the tests need it


def run_main(capsys, argv):
    """microgpt.main(argv) in this process: (exit code, stdout, stderr)."""
    try:
        microgpt.main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def encode(doc, uchars):
    """A document's tokens as train() makes them: BOS, its characters' ids, BOS."""
    bos = len(uchars)
    return [bos] + [uchars.index(ch) for ch in doc] + [bos]


def doc_loss(tokens, state_dict):
    """The loss of one document exactly as train() builds it, from microgpt's own functions."""
    n = min(microgpt.block_size, len(tokens) - 1)
    keys, values = [[] for _ in range(microgpt.n_layer)], [[] for _ in range(microgpt.n_layer)]
    losses = []
    for pos in range(n):
        probs = microgpt.softmax(microgpt.gpt(tokens[pos], pos, keys, values, state_dict))
        losses.append(-probs[tokens[pos + 1]].log())
    return (1 / n) * microgpt.vsum(losses)


def configure(**settings):
    """Set microgpt's settings for one test, as main() does from the flags (the fixture above
    puts them back)."""
    unknown = set(settings) - set(microgpt.DEFAULTS)
    assert not unknown, f"not settings of microgpt: {unknown}"
    vars(microgpt).update(settings)


def pytest_collection_finish(session):
    """The default runs (1,000 steps, CPython and PyPy; and the blog post's run when names.txt is
    here) are the slowest tests: start them as soon as they are collected, so that they train
    while the other tests run."""
    if any("test_the_default_run" in item.nodeid for item in session.items):
        import tempfile
        import test_output
        folder = tempfile.mkdtemp(prefix="microgpt-default-")
        session.config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
        test_output.start_slow_runs(folder)
