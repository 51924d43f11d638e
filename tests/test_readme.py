"""README.md says true things: its flag table and usage line are `--help`'s, its reading guide
names the file's sections and what each defines, its output excerpts are the reference's lines in
their order and the default run's own reports and inspection, and CI runs its test command and
the linter."""
import argparse
import ast
import os
import re
import subprocess
import sys

import microgpt
from conftest import DEFAULT_ARGS, DEFAULT_RUN_TESTS, REPO, slow_run


def read(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as f:
        return f.read()


def flag_help(monkeypatch):
    """{flag: (default, meaning)} as the real parser is given them (--help prints these)."""
    captured, add_argument = {}, argparse.ArgumentParser.add_argument

    def recording(parser, *names, **kwargs):
        if names[0] != "-h":
            meaning, _, default = kwargs["help"].partition(" (default: ")
            captured[names[0]] = (default[:-1] if default else "", meaning)
        return add_argument(parser, *names, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "add_argument", recording)
    microgpt.parse_flags([])
    return captured


def test_flag_table_matches_help(monkeypatch):
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `?([^`|]*?)`? \| (.+?) \|$", read("README.md"), re.M)
    rows = [(flag, "" if default == "—" else default, meaning) for flag, default, meaning in rows]
    table = {flag: (default, meaning) for flag, default, meaning in rows}
    real = flag_help(monkeypatch)
    assert set(table) == set(real), f"README flags {sorted(table)} != --help flags {sorted(real)}"
    for flag in real:
        assert table[flag] == real[flag], f"{flag}: README says {table[flag]}, --help {real[flag]}"


def sections():
    """[(name, first line, last line)] of microgpt.py's sections: each opens with '# Name: ...'."""
    lines = read("microgpt.py").split("\n")
    starts = [(i + 1, m.group(1)) for i, line in enumerate(lines)
              for m in [re.match(r"# ([A-Z][a-z]+): ", line)] if m]
    ends = [first - 1 for first, _ in starts[1:]] + [len(lines)]
    return [(name, first, last) for (first, name), last in zip(starts, ends)]


def definitions():
    """{name: line} of every top-level def, class and setting in microgpt.py, and of the
    methods of its classes."""
    found = {}
    for node in ast.parse(read("microgpt.py")).body:
        targets = getattr(node, "targets", [])
        names = [node.name] if hasattr(node, "name") else [
            n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        found.update({name: node.lineno for name in names})
        if isinstance(node, ast.ClassDef):
            found.update({m.name: m.lineno for m in node.body if isinstance(m, ast.FunctionDef)})
    return found


def table(heading):
    """The rows of the first table under a README heading, as lists of cells."""
    section = read("README.md").split(f"## {heading}\n", 1)[1].split("\n## ")[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header row


def test_reading_guide_names_the_files_sections_in_order_and_what_each_defines():
    guide = table("Reading guide")
    found = sections()
    assert [row[0] for row in guide] == [name for name, _, _ in found], (
        f"README reading guide {[row[0] for row in guide]}\n!= microgpt.py's sections "
        f"{[name for name, _, _ in found]}")
    lines = definitions()
    for (name, first, last), (_, what) in zip(found, guide):
        for defined in re.findall(r"`([A-Za-z_]+)\(\)`", what):
            line = lines.get(defined)
            assert line and first <= line <= last, (
                f"README says {defined}() is in the {name} section (lines {first}-{last}), "
                f"microgpt.py defines it at line {line}")


def test_blog_post_table_names_what_the_file_defines():
    rows = table("Reading it next to the blog post")
    assert len(rows) >= 8, f"expected a row per part of the post, got {rows}"
    lines = definitions()
    for part, here in rows:
        names = re.findall(r"`([A-Za-z_]+)`", here)
        missing = [name for name in names if name not in lines]
        assert names and not missing, f"{part}: {missing or here} not defined in microgpt.py"


def test_the_usage_line_is_the_programs(tmp_path):
    env = dict(os.environ, COLUMNS="80")  # argparse wraps to the terminal's width
    result = subprocess.run([sys.executable, os.path.join(REPO, "microgpt.py"), "--help"],
                            cwd=tmp_path, env=env, capture_output=True, timeout=60)
    usage = result.stdout.decode().split("\n\n")[0]
    shown = read("README.md").split("## Flags\n", 1)[1].split("```\n")[1].rstrip("\n")
    assert shown == usage, f"README shows\n{shown}\n--help prints\n{usage}"


def find_block(lines, block, start):
    """The first index i >= start where block is lines[i:i + len(block)], or None."""
    return next((i for i in range(start, len(lines) - len(block) + 1)
                 if lines[i:i + len(block)] == block), None)


def test_output_excerpt_is_the_reference_output():
    readme = read("README.md")
    excerpt = readme.split("## Quick start", 1)[1].split("```")[3].strip("\n").split("\n")
    with open(os.path.join(REPO, "tests", "golden", "default.out"), "rb") as f:
        # Lines as a terminal starts them: a step line ends in \r, the last one in \r\n
        golden = f.read().decode("utf-8").splitlines()
    shown = [line for line in excerpt if line != "..."]
    assert len(shown) >= 10, f"the excerpt is too short to mean anything: {shown}"
    # Runs of lines with no "..." between them: each is a run of consecutive lines of the
    # output, and they come in the output's order.
    blocks, block = [], []
    for line in excerpt + ["..."]:
        if line != "...":
            block.append(line)
        elif block:
            blocks, block = blocks + [block], []
    # A "..." stands for at least one line; none before the first line or after the last: the
    # excerpt starts and ends where the output does.
    at = 0 if excerpt[0] != "..." else 1  # the first line index the next block may start at
    for i, block in enumerate(blocks):
        last = i == len(blocks) - 1 and excerpt[-1] != "..."
        found = len(golden) - len(block) if last else find_block(golden, block, at)
        assert found is not None and found >= at and golden[found:found + len(block)] == block, (
            f"README excerpt lines {block} are not consecutive lines of default.out "
            + (f"at its end {golden[-len(block):]}" if last else f"from its line {at + 1} on")
            + f", after the excerpt's lines before them {blocks[i - 1][-1:] if i else []}")
        if i == 0 and excerpt[0] != "...":
            assert found == 0, f"README excerpt starts {block[:2]}, default.out {golden[:2]}"
        at = found + len(block) + 1  # the lines a "..." leaves out: at least one
    if excerpt[-1] == "...":
        assert at <= len(golden), (
            f"README excerpt ends in '...' after {blocks[-1][-1:]}, default.out's last line")


def test_ci_runs_the_readme_test_command_and_the_linter():
    readme = read("README.md")
    command = re.search(r"python -m pip install pytest && (python -m pytest)", readme).group(1)
    ci = read(".ci", "run").split("\n")
    assert command in ci, f"README's test command {command!r} is not a line of .ci/run"
    assert any(line.startswith("python -m ruff check") for line in ci), "CI runs no linter"
    pyproject = read("pyproject.toml")
    assert "line-length = 100" in pyproject and '"E", "W", "F"' in pyproject, pyproject


slow_run("default cpython", DEFAULT_RUN_TESTS, sys.executable, DEFAULT_ARGS)


def code_block_after(text, marker):
    """The first ``` block after `marker` in text, as lines."""
    return text.split(marker, 1)[1].split("```\n")[1].rstrip("\n").split("\n")


def test_the_readme_shows_the_default_runs_reports_and_inspection(background):
    # The default run (in the background; test_output.py checks its bytes): its two lines on
    # standard error are Quick start's, and its inspection of "emma" is Look inside's
    out, err, code, _, _ = background.result("default cpython", sys.executable, DEFAULT_ARGS)
    assert code == 0, err
    readme = read("README.md")
    reports = code_block_after(readme, "two more lines go to standard error")
    assert reports == err.decode().splitlines(), (reports, err.decode())
    shown = code_block_after(readme, "Here is the default model on")
    inspection = out.decode().split("\n--- inspect ", 1)[1]
    assert shown == ("--- inspect " + inspection).rstrip("\n").split("\n"), inspection
