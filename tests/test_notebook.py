"""microgpt.py runs in a notebook (README.md, In a notebook): pasted into a cell, it trains and
samples with the defaults; `%run microgpt.py` takes flags; `import microgpt` and main([...])
work. With a real Jupyter kernel (nbclient and ipykernel, test-only tools) running this
interpreter.

One notebook of three cells, so one kernel start (about 3 s here), each cell's output checked on
its own. The folder's input.txt holds a few one-letter names, so that the defaults' 1,000 steps
are cheap (two positions a step)."""
import importlib
import json
import sys

import pytest

from helpers import copy_of_microgpt, sample_texts, write

pytestmark = pytest.mark.slow

LETTERS = "abcde"  # the names in the notebook's input.txt


@pytest.fixture
def this_python_kernel(tmp_path, monkeypatch):
    """The name of a kernel that runs this very interpreter (the usual python3 kernel runs
    whichever `python` comes first on PATH), found through JUPYTER_PATH. Skips where ipykernel is
    installed but cannot start (a compiled module it needs does not load on this interpreter)."""
    # Imported here, not at the top, so that only the pytest-xdist worker that runs this test
    # pays for importing them
    pytest.importorskip("nbclient", reason="nbclient runs the notebook: python -m pip install "
                        "nbclient ipykernel")
    pytest.importorskip("ipykernel", reason="ipykernel is the notebook's kernel: python -m pip "
                        "install nbclient ipykernel")
    try:
        importlib.import_module("ipykernel.kernelapp")  # what the kernel imports as it starts
    except ImportError as e:
        pytest.skip(f"ipykernel cannot start a kernel on this interpreter: {e}")
    spec = tmp_path / "jupyter" / "kernels" / "microgpt-test"
    spec.mkdir(parents=True)
    write(spec / "kernel.json", json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "microgpt's tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "microgpt-test"


def cell_output(cell):
    """(what the cell printed on stdout, its errors as 'Name: value' lines)."""
    out = "".join(o["text"] for o in cell.outputs
                  if o["output_type"] == "stream" and o["name"] == "stdout")
    errors = [f"{o['ename']}: {o['evalue']}" for o in cell.outputs if o["output_type"] == "error"]
    return out, errors


def what_went_wrong(cell, steps):
    """None if the cell trained steps steps and printed 20 samples without an error; else the
    evidence."""
    out, errors = cell_output(cell)
    last_step = f"step {steps:4d} / {steps:4d} | loss "
    if (errors == [] and f"num docs: {len(LETTERS)}\n" in out and last_step in out
            and f"step {steps + 1:4d}" not in out and len(sample_texts(out)) == 20):
        return None
    return f"errors {errors}, stdout {out[:200]!r} ... {out[-300:]!r}"


def test_microgpt_runs_pasted_into_a_cell_with_run_and_imported(tmp_path, this_python_kernel):
    """Cell 1, the whole text of microgpt.py: the defaults (1,000 steps, 20 samples), the
    kernel's own arguments (ipykernel_launcher.py -f kernel.json) not taken for flags. Cell 2,
    `%run microgpt.py --num-steps 50`: its flags. Cell 3, `import microgpt` and
    `microgpt.main(["--num-steps", "50"])`."""
    folder = tmp_path / "notebook"
    folder.mkdir()
    write(folder / "input.txt", "".join(f"{letter}\n" for letter in LETTERS))
    script = copy_of_microgpt(folder)  # (beside the input.txt already there)
    with open(script, encoding="utf-8") as f:
        pasted = f.read()
    cells = [("microgpt.py pasted", pasted, 1000),  # (what, the cell's code, the steps it trains)
             ("%run", "%run microgpt.py --num-steps 50", 50),
             ("import", 'import microgpt\nmicrogpt.main(["--num-steps", "50"])', 50)]
    nbclient, nbformat = importlib.import_module("nbclient"), importlib.import_module("nbformat")
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(code) for _, code, _ in cells])
    nbclient.NotebookClient(notebook, timeout=600, kernel_name=this_python_kernel,
                            allow_errors=True,  # so that each cell runs, and is checked alone
                            resources={"metadata": {"path": str(folder)}}).execute()
    wrong = {}
    for (what, _, steps), cell in zip(cells, notebook.cells):
        evidence = what_went_wrong(cell, steps)
        if evidence is not None:
            wrong[what] = evidence
    assert wrong == {}, f"cells that did not train and sample as expected: {wrong}"
