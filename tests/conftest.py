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
def utf8_output():
    """Every program a test starts writes UTF-8 to its pipes, as it does on Linux and macOS;
    Windows would use its ANSI code page, which has no sparkline blocks and no Hangul."""
    before = os.environ.get("PYTHONIOENCODING")
    os.environ["PYTHONIOENCODING"] = "utf-8"
    yield
    if before is None:
        os.environ.pop("PYTHONIOENCODING")
    else:
        os.environ["PYTHONIOENCODING"] = before


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


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """With pytest-xdist installed, the tests run side by side on every core, as `-n auto` has
    them, unless the command line says otherwise (-n 0, -p no:xdist), or asks for a debugger
    (--pdb, --trace), for the tests' own output (-s) or to stop at a failure (-x, --maxfail=N),
    which need one process: -x then stops at the first failure in the order the tests are
    written (README, Break it to learn it). pytest alone runs them one by one. (Run before
    pytest-xdist reads its options; pytest-xdist's own workers are left alone.)"""
    if (config.pluginmanager.hasplugin("xdist") and config.option.numprocesses is None
            and not config.option.usepdb and not config.option.trace
            and config.option.capture != "no"
            and not config.option.maxfail  # (None or 0 unless -x or --maxfail, as pytest reads it)
            and "PYTEST_XDIST_WORKER" not in os.environ):
        config.option.numprocesses = "auto"


def shared_folder(tmp_path_factory):
    """A temporary folder that every process of this test run shares: pytest's own, or with
    pytest-xdist, the one above its workers' own (as pytest-xdist's documentation does it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


def pytest_collection_modifyitems(items):
    """The tests that need the default run come last, so that it has run, in the background,
    while the others ran (sorted stably: the rest keep their order)."""
    items.sort(key=lambda item: "default_run" in item.fixturenames)


@pytest.fixture(scope="session", autouse=True)
def slow_runs_start_at_once(request, tmp_path_factory):
    """The default run of 1,000 steps starts in the background as the first test starts, if any
    test of this run needs it, and runs on another core while the others run; the process that
    started it waits for it at the end, or stops it if the test run stops early (-x)."""
    started = None
    if any("default_run" in item.fixturenames for item in request.session.items):
        started = helpers.start_once(shared_folder(tmp_path_factory) / "default-run",
                                     ["--save", "model.json"])
    yield
    if started is not None:
        program, thread = started
        if request.session.shouldstop or request.session.shouldfail:
            program.kill()
        thread.join()


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """`python microgpt.py --save model.json`, the default 1,000-step run, once for this whole test
    run (whichever process runs the tests that need it): its stdout (bytes), its stderr and exit
    status, and the folder holding its input.txt and model.json."""
    folder = shared_folder(tmp_path_factory) / "default-run"
    helpers.start_once(folder, ["--save", "model.json"])  # (slow_runs_start_at_once did, surely)
    return (*helpers.outcome(folder), folder)
