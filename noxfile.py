"""The whole test suite on every Python: a session per interpreter, each in an environment of its
own, and the PyTorch cross-check in one more. `python -m nox` runs them all (an interpreter this
machine lacks is skipped, unless --error-on-missing-interpreters); `python -m nox -s tests-3.12`
runs one. Arguments after `--` go to pytest: `python -m nox -s torch -- -n 0`."""
import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "pypy3"]

# PyTorch's CPU build comes from PyTorch's own index: from PyPI, `pip install torch` on Linux brings
# a CUDA build of several GB. The release is pinned so that the cross-check is the same everywhere
# (any torch 2 would do: change both together). Where that index cannot be reached, pip warns,
# retries (5 times per package by default: PIP_RETRIES=0 or 1 makes that quick) and takes the
# release from the other places its configuration names (find-links, extra-index-url).
TORCH = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@nox.session(python=PYTHONS)
def tests(session):
    """python -m pytest, as README.md gives it, under one interpreter, with pytest-xdist and the
    notebook tools. The PyTorch comparison is skipped here (no torch in these environments): the
    torch session runs it."""
    if session.python == "pypy3":
        # psutil, which ipykernel needs, does not load on PyPy 7.3 from version 7 on (a symbol
        # of CPython's C API it uses is missing)
        session.install("psutil<7")
    session.install(*nox.project.dependency_groups(PYPROJECT, "test", "notebook"))
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def torch(session):
    """tests/test_torch.py with PyTorch's CPU build, installed into this session's own
    environment. It checks that torch imports, as a CPU build, so that it never skips the
    comparison."""
    session.install(TORCH, "--index-url", TORCH_CPU_INDEX)
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("python", "-c", "import torch; assert not torch.version.cuda, torch.__version__")
    session.run("python", "-m", "pytest", "tests/test_torch.py", *session.posargs)
