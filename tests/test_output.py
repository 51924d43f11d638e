"""The program prints the reference's bytes and trains its bits: run as a real program on the
repository's input.txt, with each golden's flags, microgpt.py prints exactly the bytes of
tests/golden/NAME.out, and its trained parameters hash to this interpreter family's line of
NAME.params (the 4-decimal losses and the names cannot show a last-bit change; the hash can).
--plain, the algorithm exactly as written with no Efficiency section, gives the same bytes and
bits. The default run prints the blog post's names.

Each run adds `--save m.json` to the golden's flags, to read the trained parameters back: saving
changes nothing on stdout (tests/test_saveload.py checks that on its own), so the bytes are still
the golden's. The bytes are those the program printed: on Windows, where Python writes each \\n of
stdout as \\r\\n, helpers.printed undoes that first."""
import ast
import shutil

import pytest

from helpers import (INPUT, SCRIPT, copy_of_microgpt, expected_params_hash, first_difference,
                     golden, golden_args, printed, run_script, sample_texts, saved_params_hash)

# What the blog post's run prints, which README.md says the default run prints too: its 20 names
# and its last step's loss, as the default golden holds them
BLOG_NAMES = ["kamon", "ann", "karai", "jaire", "vialan", "karia", "yeran", "anna", "areli",
              "kaina", "konna", "keylen", "liole", "alerin", "earan", "lenne", "kana", "lara",
              "alela", "anton"]
BLOG_LAST_LOSS = "2.6497"


def folder_with_input(path):
    """path, holding input.txt (a copy of the repository's): a folder to run microgpt.py in."""
    path.mkdir(exist_ok=True)
    shutil.copyfile(INPUT, path / "input.txt")
    return path


def assert_golden_run(name, extra, folder, script=SCRIPT):
    """microgpt.py (or the copy `script`) run in folder with golden NAME's flags and `extra`:
    it exits 0, prints golden NAME's bytes and trains the reference's parameters, bit for bit.
    Returns the run's stdout."""
    args = [*golden_args(name), *extra, "--save", "m.json"]
    run = run_script(args, folder, script=script)
    label = f"microgpt.py {' '.join(args)}" + ("" if script == SCRIPT else f" (copy {script})")
    err = run.stderr[-2000:].decode("utf-8", "replace")
    assert run.returncode == 0, f"{label}: exit {run.returncode}, stderr {err!r}"
    expected, stdout = golden(name, "out"), printed(run.stdout)
    assert stdout == expected, (
        f"{label}: stdout differs from tests/golden/{name}.out at "
        f"{first_difference(expected, stdout)}")
    got, want = saved_params_hash(folder / "m.json"), expected_params_hash(name)
    assert got == want, (
        f"{label}: the bytes agree, but the trained parameters hash to {got}, the reference's to "
        f"{want}: some operation rounds differently, or in another order")
    return stdout


@pytest.mark.parametrize("name", ["short", "config"])
def test_the_run_prints_the_reference_bytes_and_trains_its_bits(name, tmp_path):
    """short (20 steps) and config (another seed, shape, learning rate and temperature)."""
    assert_golden_run(name, [], folder_with_input(tmp_path))


@pytest.mark.slow
def test_the_default_run_prints_the_reference_bytes_and_the_blog_posts_names(default_run):
    """python microgpt.py, no flags but --save (the session's default run, which the README's
    tests share): 1,000 steps, the golden's bytes and bits, and so the post's 20 names and last
    loss."""
    stdout, err, code, folder = default_run
    stdout = printed(stdout)
    assert code == 0, f"exit {code}, stderr {err!r}"
    expected = golden("default", "out")
    assert stdout == expected, (
        f"stdout differs from tests/golden/default.out at {first_difference(expected, stdout)}")
    got, want = saved_params_hash(folder / "model.json"), expected_params_hash("default")
    assert got == want, f"the trained parameters hash to {got}, the reference's to {want}"
    out = stdout.decode("utf-8")
    names = sample_texts(out)
    last_step = out.split("\r")[-2]  # the step lines end in \r; the inference header follows
    assert names == BLOG_NAMES and last_step.endswith(f"| loss {BLOG_LAST_LOSS}"), (
        f"samples {names}, last step {last_step!r}; the post: {BLOG_NAMES}, {BLOG_LAST_LOSS}")


def efficiency_section_sabotaged(source):
    """source whose Efficiency section (from its header to the Plumbing header) fails at once if
    used: each of the section's functions raises first thing, except efficiency(), which every
    run enters (to learn whether to use the rest), and edited() and checksum(), which it asks."""
    lines = source.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines, 1) if line.startswith("# Efficiency"))
    end = next(i for i, line in enumerate(lines, 1) if line.startswith("# Plumbing"))
    sabotaged = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.FunctionDef) and start < node.lineno < end
                and node.name not in ("efficiency", "edited", "checksum")):
            first = node.body[0]
            assert first.lineno > node.lineno, f"{node.name} is a one-line def"
            sabotaged.append((first.lineno, first.col_offset, node.name))
    assert len(sabotaged) >= 5, f"only {sabotaged} found in the Efficiency section"
    for lineno, col, name in sorted(sabotaged, reverse=True):
        lines.insert(lineno - 1, " " * col + f"raise AssertionError('sabotaged {name} used')\n")
    return "".join(lines)


@pytest.mark.slow
def test_plain_never_uses_the_efficiency_section(tmp_path):
    """A copy whose Efficiency section fails if used: with --plain it prints the config golden's
    bytes and trains its bits (this is also the test of --plain on config), and without --plain
    the same copy fails, by the sabotage, so the sabotage does reach a default run."""
    script = copy_of_microgpt(tmp_path, efficiency_section_sabotaged)
    # (--held-out 0: the plain code's held-out loss takes seconds; test_held_out.py checks it)
    assert_golden_run("config", ["--plain", "--held-out", "0"], tmp_path, script=script)
    default = run_script(golden_args("config"), tmp_path, script=script)
    assert default.returncode != 0 and b"sabotaged" in default.stderr, (
        f"without --plain, the sabotaged copy ran: exit {default.returncode}, "
        f"stderr {default.stderr[-2000:].decode('utf-8', 'replace')!r}")
