"""README.md says what the program does, and these tests keep it true: its flag table and usage
line are the program's --help, its excerpts of output are real runs (the reference's bytes, the
default model's reports, inspection, samples and errors), its reading table names the file's
sections and definitions, and CI runs the test command it gives."""
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

import microgpt
from helpers import (INPUT, NAMES_TEXT, REPO, SCRIPT, copy_of_microgpt, golden, printed,
                     run_main, run_script, write)

with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    README = f.read()


def section(title):
    """The text of README's section `## title`, up to the next section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README.md has no section '## {title}'"
    return match.group(1)


def code_blocks(title):
    """The fenced code blocks of README's section `## title`, in order."""
    return re.findall(r"^```\n(.*?)^```$", section(title), flags=re.M | re.S)


def table(title, first_header):
    """The rows of the table in README's section `## title` whose header starts with
    first_header, as lists of cells."""
    rows = []
    lines = section(title).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def help_text(capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))  # argparse wraps --help to the terminal's width
    code, out, err = run_main(capsys, ["--help"])
    assert code == 0, err
    return out


def test_the_flag_table_is_what_help_says(capsys, monkeypatch):
    """Each row of README's flag table is a flag of --help, with the default it shows (or none)
    and its meaning, and every flag of --help has its row."""
    out = help_text(capsys, monkeypatch, 300)  # wide enough that no help line wraps
    helped = {}
    for flag, meaning in re.findall(r"^  (--[\w-]+)(?: \S+)?\s{2,}(.*)$", out, flags=re.M):
        default = re.search(r" \(default: (.*)\)$", meaning)
        helped[flag] = (default.group(1) if default else "—", re.sub(r" \(default: .*\)$", "",
                                                                       meaning))
    rows = {row[0].strip("`"): (row[1].strip("`"), row[2]) for row in table("Flags", "flag")}
    assert rows == helped, (f"README's flag table {rows}\n"
                            f"is not what --help says: {helped}")


def test_the_usage_line_is_the_programs(capsys, monkeypatch):
    out = help_text(capsys, monkeypatch, 80)
    usage = out[:out.index("\n\n")]
    assert usage in code_blocks("Flags")[0], (
        f"README's usage line:\n{code_blocks('Flags')[0]}\nthe program's:\n{usage}")


def test_the_first_runs_excerpt_is_the_reference_output():
    """Every line of the quick start's output excerpt is a line of the reference's output for the
    default run, in the same order ('...' stands for lines left out; the step lines end in \\r in
    the real output, where the excerpt shows them one per line)."""
    expected = re.split(r"[\r\n]", golden("default", "out").decode("utf-8"))
    position = 0
    for line in code_blocks("Quick start")[1].splitlines():
        if line == "...":
            continue
        assert line in expected[position:], (
            f"README line {line!r} is not in the reference's output after line {position}")
        position = expected.index(line, position) + 1


@pytest.mark.slow
def test_the_default_runs_reports_are_what_the_readme_shows(default_run):
    """The three lines on standard error after the default run are README's, character for
    character, and so are the means it quotes from them: the first and last twentieth's, the
    held-out loss and the loss on the names trained on last."""
    _, err, code, _ = default_run
    assert code == 0, err
    shown = code_blocks("Quick start")[2]
    assert err == shown, f"README shows:\n{shown}\nthe default run wrote:\n{err}"
    first, last = re.search(r": (\d\.\d{4}) \S+ (\d\.\d{4})\n", err).groups()
    assert f"first twentieth's mean ({first})" in section("What the loss means")
    assert f"last's ({last})" in section("What the loss means")
    held, trained = re.search(r"\): (\d\.\d{4}); on the 200 it trained on last: (\d\.\d{4})\n",
                              err).groups()
    assert f"{held} on names never seen and {trained} on names just learned" in section(
        "What the loss means"), (held, trained)


@pytest.mark.slow
def test_the_table_of_runs_default_row_is_the_default_run(default_run):
    """README's table of what more steps and size buy: its default row's two losses are the
    default run's held-out line, and its samples are the run's first ones."""
    stdout, err, code, _ = default_run
    assert code == 0, err
    rows = table("Better names? What more steps and size buy", "run")
    default = next(row for row in rows if row[0] == "default")
    held, trained = re.search(r"\): (\d\.\d{4}); on the 200 it trained on last: (\d\.\d{4})",
                              err).groups()
    assert (default[2], default[3]) == (held, trained), (default, err)
    samples = [name.strip() for name in default[-1].split(",")]
    names = re.findall(r"^sample +\d+: (.*)$", stdout.decode("utf-8"), flags=re.M)
    assert samples == names[:len(samples)], (samples, names)


def examples(title):
    """The `$ python microgpt.py ...` commands of README's section `## title`, with what README
    shows they print: [(args, text)]."""
    found = []
    for block in code_blocks(title):
        for command, shown in re.findall(r"^\$ python microgpt\.py (.*)\n((?:(?!\$ ).*\n?)*)",
                                         block, flags=re.M):
            found.append((shlex.split(command), shown))
    return found


@pytest.mark.slow
def test_the_saved_models_samples_prompts_and_refusals_are_what_the_readme_shows(default_run):
    """README's examples with the default run's saved model (--load, --prompt, a flag that cannot
    go with --load) and of prompts it cannot take print what README shows: standard output, or
    the last line of stderr."""
    _, _, code, folder = default_run
    assert code == 0
    checked = 0
    for args, shown in examples("Save, sample later, prompt"):
        if "--save" in args:
            continue  # the default run itself, which made model.json
        result = run_script(args, cwd=folder)
        out, err = printed(result.stdout).decode("utf-8"), printed(result.stderr).decode("utf-8")
        if shown.startswith(("...\n", "microgpt: ")):  # an error: README shows its last line
            assert err.splitlines()[-1] == shown.splitlines()[-1], (args, err)
            assert result.returncode != 0, (args, result.returncode)
        else:
            assert out == shown, f"{args}: README shows\n{shown}\nthe program printed\n{out}"
        checked += 1
    assert checked == 5


@pytest.mark.slow
def test_the_inspection_of_emma_is_the_default_models(default_run):
    """The inspection README shows, and the numbers it quotes in "How to read it", are the
    default model's on "emma" (and on "quinn" for the two it quotes from there)."""
    _, _, _, folder = default_run
    shown = code_blocks("Look inside")[0]
    out = run_script(["--load", "model.json", "--num-samples", "0", "--inspect", "emma"],
                     cwd=folder).stdout
    out = printed(out).decode("utf-8")
    assert out.endswith(shown), f"README shows:\n{shown}\nthe program printed:\n{out}"
    quinn = run_script(["--load", "model.json", "--num-samples", "0", "--inspect", "quinn"],
                       cwd=folder).stdout
    quinn = printed(quinn).decode("utf-8")
    quoted = re.findall(r"\(?(0\.\d{2,4})\)?", section("Look inside").split("How to read it")[1])
    for number in quoted:
        assert number in out or number in quinn, f"README quotes {number}, which no run shows"


def test_the_failure_lines_readme_shows_are_the_programs(tmp_path, capsys):
    """Each error of README's Errors section is the line the program writes for that case."""
    (tmp_path / "data.bin").write_bytes(b"ann\n\xff\xfebob\n")
    shutil.copyfile(INPUT, tmp_path / "input.txt")
    shown = dict(re.findall(r"^\$ python microgpt\.py (.*)\n(?:.*\n)*?(microgpt: .*?)\s+\(exit",
                            code_blocks("Errors")[0], flags=re.M))
    assert len(shown) == 4, shown
    for command, line in shown.items():
        args = command.split(" > ")[0].split()
        if " > /dev/full" not in command:
            err = run_script(args, cwd=tmp_path).stderr
        elif os.path.exists("/dev/full"):
            with open("/dev/full", "w") as full:
                err = subprocess.run([sys.executable, SCRIPT, *args], cwd=tmp_path, stdout=full,
                                     stderr=subprocess.PIPE, timeout=120).stderr
        else:  # (README says /dev/full is Linux's; elsewhere that example cannot be run)
            continue
        assert printed(err).decode("utf-8").splitlines()[-1] == line, (command, err)


def test_the_reading_table_names_the_files_sections_in_order_and_their_definitions():
    """The sections of README's reading table are the file's sections, in the file's order (each
    opens with a comment '# Section: ...' at the start of a line), and every name it puts in
    backticks for a section is defined in microgpt.py (at the top, in Value, or nested)."""
    with open(microgpt.__file__, encoding="utf-8") as f:
        source = f.read()
    rows = table("Reading it beside the post", "section")
    positions = []
    for name, _, here in rows:
        match = re.search(rf"^# {name}: ", source, flags=re.M)
        assert match, f"microgpt.py has no section '# {name}: ...'"
        positions.append(match.start())
        for defined in re.findall(r"`(\w+)(?:\(\))?`", here):
            nested = re.search(rf"^\s+def {defined}\(", source, flags=re.M)  # build_topo
            assert hasattr(microgpt, defined) or hasattr(microgpt.Value, defined) or nested, (
                f"README's row {name} names `{defined}`, which microgpt.py does not define")
    assert positions == sorted(positions), [row[0] for row in rows]


def test_the_readme_lists_every_test_file():
    listed = set(re.findall(r"^\| `tests/(test_\w+\.py)` \|", README, flags=re.M))
    present = {name for name in os.listdir(os.path.join(REPO, "tests"))
               if re.fullmatch(r"test_\w+\.py", name)}
    assert listed == present, f"README lists {sorted(listed)}; tests/ has {sorted(present)}"


def test_ci_runs_the_readmes_test_command():
    """The command README gives to run the tests is the one CI runs, as a line of .ci/run."""
    command = code_blocks("How it is verified")[0].splitlines()[-1]
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        assert command in f.read().splitlines(), f"CI does not run {command!r}"


def test_the_line_about_an_edit_is_the_programs(tmp_path):
    """The line README shows for an edited Value.__mul__ is the one a run of such a copy writes
    (the numbers it changes are not the point here: the edit only reorders a product)."""
    shown = code_blocks("Efficiency and your edits")[0].strip()

    def edit(source):
        return source.replace("return Value(self.data * other.data, (self, other), "
                              "(other.data, self.data))",
                              "return Value(other.data * self.data, (self, other), "
                              "(other.data, self.data))", 1)

    script = copy_of_microgpt(tmp_path, edit)
    write(tmp_path / "names.txt", NAMES_TEXT)
    result = run_script(["--input", "names.txt", "--n-embd", "4", "--n-head", "1", "--num-steps",
                         "1", "--num-samples", "1"], cwd=tmp_path, script=script)
    lines = result.stderr.decode("utf-8").splitlines()
    assert lines[0] == shown, f"README shows {shown!r}; the run wrote {lines}"


@pytest.mark.parametrize("flags, quoted", [
    (["--learning-rate", "1e6", "--num-steps", "3"],
     "the model's numbers blew up at step 2: try a smaller --learning-rate"),
    (["--temperature", "1e-320", "--num-steps", "1"],
     "a number too large for a float: try a larger --temperature"),
])
def test_the_numbers_that_blow_up_say_what_the_readme_quotes(flags, quoted, tmp_path):
    """The Errors section quotes what the default data says for two extreme settings."""
    assert f"(`{flags[0]} {flags[1]}`)" in section("Errors") or f"`{flags[0]} {flags[1]}`" in (
        section("Errors")), f"README does not name {flags[:2]}"
    assert f"`{quoted}`" in section("Errors"), f"README does not quote {quoted!r}"
    shutil.copyfile(INPUT, tmp_path / "input.txt")
    err = run_script(flags, cwd=tmp_path).stderr.decode("utf-8")
    assert err.splitlines()[-1] == f"microgpt: {quoted}", err


def test_input_txt_is_the_file_the_readme_names():
    """README's Data section gives input.txt's sha256 and number of names: they are the file's."""
    with open(INPUT, "rb") as f:
        data = f.read()
    digest = re.search(r"sha256\s+`([0-9a-f]{64})`", section("Data")).group(1)
    assert hashlib.sha256(data).hexdigest() == digest
    count = int(re.search(r"([\d,]+) first names", section("Data")).group(1).replace(",", ""))
    assert len([line for line in data.decode("utf-8").splitlines() if line.strip()]) == count
