"""The field steps the zero-decode path does in the query leave exactly the fields the steps would."""
from __future__ import annotations

import pytest

from osmosis_beam.io.postgres.encoded import Unsupported, project
from osmosis_beam.steps.fields import DropStep, RenameStep, SelectStep

COLUMNS = ["id", "updated_at", "a", "b"]
STEPS = {"select": SelectStep, "drop": DropStep, "rename": RenameStep}


@pytest.mark.parametrize("fields", [
    (),
    (("select", ["b", "id", "zzz"]),),
    (("drop", ["a"]), ("rename", {"b": "bee", "nothing": "x"})),
    (("rename", {"a": "b", "b": "a"}), ("select", ["a", "b"])),
    (("select", ["a", "a", "id"]), ("drop", ["id"])),
])
def test_projection_matches_the_steps(fields):
    record = {c: f"v-{c}" for c in COLUMNS}
    expected = [record]
    for name, config in fields:
        expected = STEPS[name](config).process(expected)
    pairs = project(COLUMNS, fields)
    got = {field: (record[column] if column else None) for field, column in pairs}
    assert got == expected[0] and list(got) == list(expected[0])


def test_a_rename_onto_an_existing_field_is_not_pushed_down():
    with pytest.raises(Unsupported, match="same name"):
        project(COLUMNS, (("rename", {"a": "b"}),))
