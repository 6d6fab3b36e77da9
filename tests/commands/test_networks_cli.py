"""``main.py networks`` prints every preset's networks with SPEC §4's numbers.

The command is driven through its own ``add_arguments`` / ``run`` (the contract ``main.py``
uses), so these tests do not depend on the other commands importing cleanly.
"""

from __future__ import annotations

import argparse
import json

import pytest

from lib.commands import networks


def run_command(capsys, *argv: str) -> str:
    parser = argparse.ArgumentParser(prog="main.py networks")
    networks.add_arguments(parser)
    assert networks.run(parser.parse_args(argv)) == 0
    return capsys.readouterr().out


def test_table_lists_every_preset_and_network(capsys):
    lines = run_command(capsys).splitlines()
    paper_thigh = next(line for line in lines if line.startswith("paper") and "thigh" in line)
    assert "45.45M" in paper_thigh and "96.9" in paper_thigh
    assert "188,284,380" in paper_thigh
    for preset in ("paper", "small", "compact"):
        rows = [line for line in lines if line.startswith(preset)]
        assert len(rows) == 3 and any("classifier" in r for r in rows)


def test_json_and_exact_fields(capsys):
    rows = json.loads(run_command(capsys, "--preset", "compact", "--json", "--exact-rf"))
    assert [r["network"] for r in rows] == ["classifier", "thigh segmenter", "leg segmenter"]
    assert rows[1]["classes"] == 13 and rows[2]["classes"] == 7
    assert rows[1]["receptive_fields"][-1] == [172, 268, 364]
    assert abs(rows[1]["gflop_per_slice"] - 6.09) < 0.01


def test_unknown_preset_is_a_usage_error(capsys):
    parser = argparse.ArgumentParser(prog="main.py networks")
    networks.add_arguments(parser)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--preset", "huge"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
