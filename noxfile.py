"""The whole test suite on every Python: a session per interpreter, each in an environment of its
own, and the PyTorch cross-check in one more. `python -m nox` runs them all (an interpreter this
machine lacks is skipped, unless --error-on-missing-interpreters); `python -m nox -s tests-3.12`
runs one."""
import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "pypy3"]


@nox.session(python=PYTHONS)
def tests(session):
    """python -m pytest, as README.md gives it, under one interpreter. The PyTorch comparison is
    skipped here (no torch in these environments): the torch session runs it."""
    if session.python == "pypy3":
        # psutil, which ipykernel needs, does not load on PyPy 7.3 from version 7 on (a symbol
        # of CPython's C API it uses is missing)
        session.install("psutil<7")
    session.install(*nox.project.dependency_groups(PYPROJECT, "test", "notebook"))
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11", venv_params=["--system-site-packages"])
def torch(session):
    """tests/test_torch.py with this Python's own torch (install its CPU build first: README.md,
    How it is verified), which must be there: this session never skips the comparison."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("python", "-c", "import torch")
    session.run("python", "-m", "pytest", "tests/test_torch.py", *session.posargs)
