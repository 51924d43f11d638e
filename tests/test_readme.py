"""README.md says true things: its flag table is `--help`, its reading guide is the file's
sections, its output excerpt is the reference's lines in their order, and CI runs its test
command."""
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


def test_ci_runs_the_readme_test_command():
    readme = read("README.md")
    command = re.search(r"python -m pip install pytest && (python -m pytest)", readme).group(1)
    ci = read(".ci", "run").split("\n")
    assert command in ci, f"README's test command {command!r} is not a line of .ci/run"
