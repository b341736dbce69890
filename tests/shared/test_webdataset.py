"""WebDataset shards read by the service's own tar reader: samples grouped as webdataset's own
reader groups them (its `ShardWriter` writing, its `WebDataset` reading as the reference),
member spans that cut each member's bytes back out, and members that fail their sample
alone."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import webdataset as wds
from braceexpand import braceexpand
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_expander

from shared.errors import InputError
from shared.storage.parts import IMAGE, JSON, LABEL, MASK
from shared.storage.webdataset import decode_sample, expand, index_shard, shard_count, split_name

SHARD = "s3://b/pets/shard-000000.tar"


def _shard(samples: list[dict]) -> bytes:
    buf = io.BytesIO()
    with wds.TarWriter(buf) as sink:
        for sample in samples:
            sink.write(sample)
    return buf.getvalue()


def _cutter(data: bytes):
    """`read` for `decode_sample`: spans cut out of the shard's bytes."""
    return lambda span: data[span[0]:span[1]]


def _index(data: bytes, label_field: str = "cls") -> list:
    return list(index_shard(lambda: io.BytesIO(data), SHARD, "shard-000000", label_field))


def _raw_tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("name", ["a/b/x.seg.png", "x.PNG", "dir.v2/x.jpg", "noext",
                                  "a/.hidden", "k.", "x.tar.gz"])
def test_keys_and_extensions_follow_webdatasets_rule(name):
    key, ext = base_plus_ext(name)
    expected = None if key is None or not ext else (key, ext.lower())
    assert split_name(name) == expected


@pytest.mark.parametrize("pattern", ["s3://b/{train,val}/shard-{008..011}.tar",
                                     "s/{3..1}.tar", "a{0..10}b", "x{000000..000012}.tar",
                                     "y{1..010}", "z{-2..02}"])
def test_brace_patterns_expand_as_braceexpand_does(pattern):
    names = list(expand(pattern, "f"))
    assert names == list(braceexpand(pattern))
    assert shard_count(pattern, "f") == len(names)


def test_samples_are_grouped_as_webdatasets_reader_groups_them():
    samples = [{"__key__": f"{i:04d}", "png": bytes([i]) * (100 + i), "cls": i,
                "json": {"box": [0, 0, 4, 4]}, "txt": "ignored"} for i in range(5)]
    samples[2]["mask.png"] = b"mask bytes"
    data = _shard(samples)
    reference = list(group_by_keys(tar_file_expander([{"url": SHARD,
                                                       "stream": io.BytesIO(data)}])))
    sources = _index(data)
    assert [s.id for s in sources] == [f"shard-000000/{r['__key__']}" for r in reference]
    assert [s.name for s in sources] == [f"{SHARD}#{r['__key__']}" for r in reference]
    for source, ref in zip(sources, reference, strict=True):
        part = source.part
        assert source.error is None and part.object == SHARD and part.label == "cls"
        roles = {IMAGE: "png", LABEL: "cls", JSON: "json", MASK: "mask.png"}
        assert {r for r in roles if roles[r] in ref} == set(part.members)
        for role, (start, stop) in part.members.items():
            assert data[start:stop] == ref[roles[role]], role
            assert part.span[0] <= start and stop <= part.span[1]

    sample = decode_sample(sources[2].part, _cutter(data), sources[2].name)
    assert (sample.image, sample.label, sample.box, sample.mask) == (
        bytes([2]) * 102, 2, (0, 0, 4, 4), b"mask bytes")


def test_a_label_from_json_a_class_name_and_a_mask_uri():
    data = _shard([
        {"__key__": "a", "jpg": b"jpeg", "json": {"species": "tabby", "mask": "masks/a.png"}},
        {"__key__": "b", "webp": b"webp", "species": "siamese", "json": {"species": "x"}},
    ])
    a, b = _index(data, "species")
    one, two = (decode_sample(s.part, _cutter(data), s.name) for s in (a, b))
    assert (one.image, one.label, one.mask_uri) == (b"jpeg", "tabby", "s3://b/pets/masks/a.png")
    assert (two.image, two.label) == (b"webp", "siamese")  # the label member wins


@pytest.mark.parametrize(("member", "says"), [
    ({"json": b"{not json"}, "json: is not valid JSON"),
    ({"json": b"[1, 2]"}, "json: must be a JSON object"),
    ({"json": json.dumps({"box": [5, 5, 1, 1]}).encode()}, "json.box: must have x0 < x1"),
    ({"json": json.dumps({"mask": "../secret.png"}).encode()}, "json.mask: must not contain"),
    ({"cls": b"  "}, "label member must hold"),
])
def test_a_member_that_says_nothing_usable_fails_its_sample(member, says):
    data = _shard([{"__key__": "bad", "png": b"png", **member}])
    (source,) = _index(data)
    with pytest.raises(InputError, match=says) as info:
        decode_sample(source.part, _cutter(data), source.name)
    assert info.value.message.startswith(f"{SHARD}#bad")


def test_samples_without_an_image_or_with_a_member_twice_fail_alone_at_planning():
    data = _raw_tar([("a.png", b"1"), ("b.cls", b"3"), ("b.txt", b"no image"),
                     ("c.png", b"2"), ("c.png", b"again"), ("d.jpeg", b"3"),
                     ("notes", b"a member without an extension is no sample's")])
    a, b, c, d = _index(data)
    assert (a.error, d.error) == (None, None) and d.part.members[IMAGE] == (
        data.index(b"3", data.index(b"again")), data.index(b"3", data.index(b"again")) + 1)
    assert b.error == (f"{SHARD}#b: has no image member (jpg, jpeg, png, webp, npy); its "
                       "members: cls, txt")
    assert c.error == f"{SHARD}#c: two members with extension 'png'"


def test_a_damaged_shard_ends_with_one_failed_item_that_says_where():
    good = _shard([{"__key__": f"{i}", "png": b"x" * 700} for i in range(3)])
    third = _index(good)[2].part.members[IMAGE][0]
    cut = good[:third + 100]  # inside the third sample's image
    *ok, broken = _index(cut)
    assert [s.id for s in ok] == ["shard-000000/0", "shard-000000/1"]
    assert all(s.part is not None for s in ok)
    assert broken.id == "shard-000000" and broken.part is None
    assert broken.error.startswith(f"{SHARD}: not a readable tar shard (truncated at byte ")
    assert broken.error.endswith("its samples from there on are not run")
    (garbage,) = _index(b"\x89PNG" + bytes(2000))
    assert "no ustar header at byte 0" in garbage.error


def test_a_missing_shard_is_one_failed_item():
    def missing():
        raise FileNotFoundError("no such object 'pets/shard-000000.tar'")

    (source,) = index_shard(missing, SHARD, "shard-000000", "cls")
    assert source.error == f"{SHARD}: no such object 'pets/shard-000000.tar'"


def test_a_link_in_a_shard_is_refused_not_followed():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("a.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    (source,) = _index(buf.getvalue())
    assert "'a.png' is a symbolic link; only files are accepted" in source.error


class _Trap:
    """Unpickled, it would write `path`: what a hostile `.pyd` member could do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_members_are_never_unpickled(tmp_path):
    """webdataset's own decoders would unpickle `.pyd` and `.pth` members; the service reads
    the sample's image and label and leaves every other member unread."""
    import pickle

    trap = tmp_path / "ran"
    payload = pickle.dumps(_Trap(str(trap)))
    data = _raw_tar([("a.png", b"png"), ("a.cls", b"3"), ("a.pyd", payload),
                     ("a.pth", payload), ("a.pickle", payload)])
    (source,) = _index(data)
    sample = decode_sample(source.part, _cutter(data), source.name)
    assert (sample.image, sample.label) == (b"png", 3)
    assert set(source.part.members) == {IMAGE, LABEL}
    assert not trap.exists()
    pickle.loads(payload).close()  # the payload is live: unpickling it would have run it
    assert trap.exists()
