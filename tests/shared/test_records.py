"""Item and output records: a top-k output's rank survives the round trip and finds it."""

from __future__ import annotations

from shared.results.records import ItemRecord, MapRef, OutputRecord
from shared.status import ItemStatus


def test_an_output_is_found_by_position_and_rank():
    outputs = tuple(OutputRecord("gradient", p, {"class": c}, map=MapRef("s", 3 * p + r), rank=r)
                    for p in (0, 1) for r, c in enumerate((4, 1, 7)))
    record = ItemRecord.from_json(ItemRecord(0, ItemStatus.SUCCEEDED, "a.png",
                                             outputs=outputs).to_json())
    assert record.outputs == outputs
    for out in outputs:
        assert record.output(out.position, out.rank) == out
    assert record.output(0) is None and record.output(0, 3) is None
    assert [o.leading for o in outputs[:3]] == [True, False, False]


def test_a_single_target_output_has_no_rank_in_its_json():
    out = OutputRecord("gradient", 0, {"class": 4})
    assert "rank" not in out.to_json() and OutputRecord.from_json(out.to_json()).rank is None
    assert out.leading
    record = ItemRecord(0, ItemStatus.SUCCEEDED, "a.png", outputs=(out,))
    assert record.output(0) == out
