"""README.md says true things: its flag table is `--help`, its reading guide is the file's
sections, its output excerpt is the reference's, and CI runs its test command."""
import argparse
import ast
import os
import re

import microgpt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    microgpt.parse_args([])
    return captured


def test_flag_table_matches_help(monkeypatch):
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `?([^`|]*?)`? \| (.+?) \|$", read("README.md"), re.M)
    rows = [(flag, "" if default == "—" else default, meaning) for flag, default, meaning in rows]
    table = {flag: (default, meaning) for flag, default, meaning in rows}
    real = flag_help(monkeypatch)
    assert set(table) == set(real), f"README flags {sorted(table)} != --help flags {sorted(real)}"
    for flag in real:
        assert table[flag] == real[flag], f"{flag}: README says {table[flag]}, --help {real[flag]}"


def test_reading_guide_matches_sections():
    lines = read("microgpt.py").split("\n")[:-1]  # the file ends with a newline
    starts = [i + 1 for i, line in enumerate(lines) if re.match(r"# [A-Z][A-Za-z ]*[:,]", line)]
    ends = [s - 1 for s in starts[1:]] + [len(lines)]
    sections = [(s, e, re.match(r"# ([A-Za-z ]+)", lines[s - 1]).group(1))
                for s, e in zip(starts, ends)]
    rows = re.findall(r"^\| (\d+)–(\d+) \| ([A-Za-z ]+) \|", read("README.md"), re.M)
    guide = [(int(s), int(e), name) for s, e, name in rows]
    assert guide == sections, f"README reading guide {guide}\n!= microgpt.py sections {sections}"


def definitions():
    """{name: (first line, last line)} of every top-level def, class and setting in microgpt.py."""
    spans = {}
    for node in ast.parse(read("microgpt.py")).body:
        targets = getattr(node, "targets", [])
        names = [node.name] if hasattr(node, "name") else [
            n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        spans.update({name: (node.lineno, node.end_lineno) for name in names})
    return spans


def test_blog_post_table_gives_each_part_and_its_lines():
    section = read("README.md").split("## Reading it next to the blog post", 1)[1].split("\n## ")[0]
    rows = re.findall(r"^\| ([^|]+) \| (.+) \| (\d+)(?:–(\d+))? \|$", section, re.M)
    assert len(rows) >= 8, f"expected a row per part of the post, got {rows}"
    spans = definitions()
    for part, here, first, last in rows:
        names = re.findall(r"`([a-z_A-Z]+)`", here.split(" (")[0])
        missing = [name for name in names if name not in spans]
        assert names and not missing, f"{part}: {missing or here} not defined in microgpt.py"
        real = (min(spans[n][0] for n in names), max(spans[n][1] for n in names))
        claimed = (int(first), int(last or first))
        assert claimed == real, f"{part}: README says lines {claimed}, {names} span {real}"


def test_output_excerpt_is_the_reference_output():
    readme = read("README.md")
    excerpt = readme.split("## Quick start", 1)[1].split("```")[3].strip("\n").split("\n")
    with open(os.path.join(REPO, "tests", "golden", "default.out"), "rb") as f:
        golden = f.read().decode("utf-8").replace("\r", "\n").split("\n")
    shown = [line for line in excerpt if line != "..."]
    missing = [line for line in shown if line not in golden]
    assert not missing, f"README excerpt lines not in the reference output: {missing}"
    assert len(shown) >= 10, f"the excerpt is too short to mean anything: {shown}"


def test_ci_runs_the_readme_test_command():
    readme = read("README.md")
    command = re.search(r"python -m pip install pytest && (python -m pytest)", readme).group(1)
    ci = read(".ci", "run").split("\n")
    assert command in ci, f"README's test command {command!r} is not a line of .ci/run"
