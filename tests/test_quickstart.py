"""Every command the Quickstart (docs/quickstart.md) shows runs, with a small budget, and does
what the page says, so the page cannot rot. The install command is not run here: CI runs the
same command from the README.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"
SMALL_STEPS = "300"     # the budget every shown launch runs with here


def console_commands(page: Path) -> list[tuple[str, list[str]]]:
    """Each ``$ command`` of the page's console blocks, with the output lines shown under it."""
    out: list[tuple[str, list[str]]] = []
    inside = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```console"
            continue
        if not inside:
            continue
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


def small_budget(argv: list[str]) -> list[str]:
    """A launch with --steps SMALL_STEPS (replacing the page's budget, or adding one)."""
    if argv[:2] != ["agentd", "launch"]:
        return argv
    if "--steps" in argv:
        i = argv.index("--steps")
        return [*argv[:i + 1], SMALL_STEPS, *argv[i + 2:]]
    return [*argv, "--steps", SMALL_STEPS]


def test_quickstart_lists_its_commands():
    commands = [c for c, _ in console_commands(QUICKSTART)]
    assert commands[0].startswith("agentd launch --topology ring --n 5")
    assert any(c.startswith("agentd replay") for c in commands)
    assert any("--backend inprocess" in c for c in commands)


def test_quickstart_commands_run(runs, tmp_path):
    """Run every command shown, in order, in one directory (later ones read earlier runs)."""
    summaries: dict[str, dict] = {}
    for command, shown in console_commands(QUICKSTART):
        argv = small_budget(shlex.split(command))
        assert argv[0] == "agentd", f"the Quickstart shows a command that is not agentd: {command}"
        run_dir = Path(argv[argv.index("--run-dir") + 1]) if "--run-dir" in argv else None
        proc = runs.start([*argv[1:], *(["--quiet"] if argv[1] == "launch" else [])],
                          tmp_path / run_dir if run_dir else None, cwd=tmp_path)
        out, _ = proc.communicate(timeout=300)
        text = out.decode()
        assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{text[-3000:]}"
        assert "Traceback" not in text, f"`{command}`:\n{text[-3000:]}"
        if argv[1] == "launch":
            assert f"run done: {run_dir}" in text, text[-2000:]
            # a normal run says nothing alarming, on its terminal or in its processes' output
            for out_file in [None, *sorted((tmp_path / run_dir / "logs").glob("*.out"))]:
                said = text if out_file is None else out_file.read_text()
                assert "WARNING" not in said, f"`{command}` ({out_file}):\n{said[-2000:]}"
            summaries[str(run_dir)] = json.loads((tmp_path / run_dir / "summary.json").read_text())
        elif argv[1] in ("algos", "topology"):
            # deterministic output: the page shows it verbatim
            assert text.splitlines() == shown, f"`{command}` printed:\n{text}"
        elif argv[1] == "env":
            assert [x for x in shown if "[ok]" in x] == [x for x in text.splitlines()
                                                          if "[ok]" in x], text
        elif argv[1] == "replay":
            assert "actions: identical to the log at all" in text, text
            assert "bit-for-bit identical to the checkpoint" in text, text
        elif argv[1] == "evaluate":
            assert "episodes of the saved policies" in text, text
            assert (tmp_path / argv[2] / "evaluation.json").exists()
        elif argv[1] == "audit":
            assert "only permitted peer kinds left any agent: YES" in text, text
        elif argv[1] == "plot":
            out_file = argv[argv.index("--out") + 1]
            assert (tmp_path / out_file).stat().st_size > 0
    # the page's claim: the in-process run is the same run as the live one
    live, inproc = summaries["runs/first"], summaries["runs/first-inprocess"]
    assert inproc["final_return"] == live["final_return"]
    assert inproc["episodes"] == live["episodes"]
