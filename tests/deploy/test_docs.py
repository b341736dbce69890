"""docs/operations.md's settings table: every variable the code reads, with the code's default."""

from __future__ import annotations

import re

import pytest

from shared.settings import Settings


@pytest.fixture(scope="module")
def table(root) -> dict[str, str]:
    """Variable -> its Default cell, from the table under `## Settings`."""
    text = (root / "docs" / "operations.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", section, re.M)
    assert len(rows) == len({name for name, _ in rows}), "a variable has two rows"
    return dict(rows)


def test_settings_table_lists_every_variable_the_code_reads(table, code_variables):
    assert sorted(set(code_variables) - set(table)) == []
    assert sorted(set(table) - set(code_variables)) == []  # no row for a setting that went


def test_settings_table_defaults_are_the_code_defaults(table):
    """Setting a variable to its documented default changes nothing."""
    checked = 0
    for name, cell in table.items():
        literal = re.fullmatch(r"`([^`]*)`", cell)
        number = re.match(r"(\d+(?:\.\d+)?)(?:\s|$)", cell)
        value = literal.group(1) if literal else number.group(1) if number else None
        if value is None:
            continue  # "none", or a default the code computes
        assert Settings.from_env({name: value}) == Settings(), (name, cell)
        checked += 1
    assert checked >= 40
