"""Storage keys and the names the API serves maps under: one per item, method position and,
for a top-k target, target rank; the names of other targets unchanged."""

from __future__ import annotations

import itertools

import pytest

from shared.spec.targets import MAX_TOPK
from shared.storage.keys import MAP_SUFFIXES, OUTPUT_SUFFIXES, JobKeys, MapName

KEYS = JobKeys("alice", "j1")


@pytest.mark.parametrize("kind,name", [
    ("npy", "3/gradient-1.npy"), ("png", "3/gradient-1.png"),
    ("overlay", "3/gradient-1.overlay.png"), ("signed", "3/gradient-1.signed.png"),
    ("curve", "3/gradient-1.curve.json"),
])
def test_outputs_of_a_single_target_keep_their_names(kind, name):
    assert KEYS.output(3, 1, "gradient", kind) == f"t/alice/jobs/j1/outputs/{name}"


@pytest.mark.parametrize("rank", [0, 1, MAX_TOPK - 1])
def test_outputs_of_a_topk_target_carry_the_rank_at_every_rank(rank):
    assert KEYS.output(3, 1, "gradient", "png", rank) == (
        f"t/alice/jobs/j1/outputs/3/gradient-1-r{rank}.png")


def test_no_two_outputs_share_a_key_and_each_is_served_by_its_name():
    keys = [KEYS.output(index, position, method, kind, rank)
            for index, position, method, kind, rank in itertools.product(
                (0, 1, 10), (0, 1, 2), ("gradient", "smoothgrad"), OUTPUT_SUFFIXES,
                (None, *range(MAX_TOPK)))]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert KEYS.file_key(KEYS.file_name(key)) == key


@pytest.mark.parametrize("kind,name", [("npy", "3/1.npy"), ("png", "3/1.png"),
                                       ("overlay", "3/1.overlay.png"),
                                       ("signed", "3/1.signed.png")])
def test_map_names_of_a_single_target_keep_their_form(kind, name):
    assert str(MapName(3, 1, None, kind)) == name
    assert MapName.parse(name) == MapName(3, 1, None, kind)


def test_map_names_of_a_topk_target_carry_the_rank_and_parse_back():
    names = [MapName(index, position, rank, kind)
             for index, position, rank, kind in itertools.product(
                 (0, 7, 123456), (0, 1, 2), (None, *range(MAX_TOPK)), MAP_SUFFIXES)]
    assert str(MapName(7, 2, 0, "overlay")) == "7/2/0.overlay.png"
    assert len({str(n) for n in names}) == len(names)
    assert [MapName.parse(str(n)) for n in names] == names


@pytest.mark.parametrize("name", ["0/0.png%00.npy", "../../0.png", "0/0/100.npy", "0/0/.npy",
                                  "0/0/-1.png", "0/0.curve.json", "0/gradient-0.npy", "0/0",
                                  "٠/٠.npy", "0/١.png"])
def test_what_names_no_map_parses_to_none(name):
    assert MapName.parse(name) is None
