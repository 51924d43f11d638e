"""Fixtures: microgpt as the file defines it, before and after each test, and no network, for every
test; the default run, for the tests that check it. Shared helpers are in helpers.py, a module of
their own."""
import gc
import os

import pytest

import helpers
import microgpt


@pytest.fixture(autouse=True)
def microgpt_as_written():
    """Each test starts and ends with microgpt's settings, functions and Value methods as the
    file defines them, and the cycle collector as it was (main() and efficiency() change them
    while a run lasts, and a test may change them itself)."""
    module, methods = dict(vars(microgpt)), dict(vars(microgpt.Value))
    collector_was_on = gc.isenabled()
    yield
    for name in microgpt.SETTINGS:
        setattr(microgpt, name, module[name])
    for name, value in module.items():
        if callable(value) and getattr(microgpt, name, None) is not value:
            setattr(microgpt, name, value)
    for name, value in methods.items():
        if callable(value) and vars(microgpt.Value).get(name) is not value:
            setattr(microgpt.Value, name, value)
    if collector_was_on:
        gc.enable()


@pytest.fixture(autouse=True, scope="session")
def no_network():
    """No test may need the network: every HTTP and HTTPS request, in this process and in every
    program a test starts, goes to a proxy at a closed local port, and so fails at once. A test
    that serves a file on 127.0.0.1 itself lets that address through (no_proxy)."""
    closed = "http://127.0.0.1:9"  # port 9, discard: nothing listens there
    settings = {"http_proxy": closed, "https_proxy": closed, "HTTP_PROXY": closed,
                "HTTPS_PROXY": closed, "no_proxy": "", "NO_PROXY": ""}
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def efficient():
    """The Efficiency section in place, as a run has it: for tests that run the model thousands
    of times (tests/test_efficiency.py proves it gives the plain code's numbers, bit for bit)."""
    with microgpt.efficiency():
        yield


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """`python microgpt.py --save model.json`, the default 1,000-step run, once for the tests
    that need it (they share an xdist group, so that one worker runs them all): its stdout (bytes),
    its stderr and exit status, and the folder holding its input.txt and model.json."""
    folder = tmp_path_factory.mktemp("default-run")
    os.symlink(helpers.INPUT, folder / "input.txt")
    result = helpers.run_script(["--save", "model.json"], cwd=folder, timeout=900)
    return result.stdout, result.stderr.decode("utf-8"), result.returncode, folder
