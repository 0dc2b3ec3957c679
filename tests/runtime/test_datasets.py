"""Dataset loaders on the real caption files in the data root, and on malformed inputs."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from model_runtime.data.datasets import (
    load_dataset,
    load_pairs_jsonl,
    load_rsicd,
    load_rsitmd,
    load_sydney,
    load_ucm,
)
from model_runtime.errors import DataError


def test_ucm_protocol_splits_and_classes():
    ds = load_ucm()
    assert len(ds) == 2100 and len(ds.classes) == 21
    assert Counter(ds.split_array("duch")) == {"train": 1050, "db": 840, "query": 210}
    assert Counter(ds.split_array("official")) == {"train": 1680, "val": 210, "test": 210}
    assert all(len(it.captions) == 5 and it.image.exists() for it in ds.items[:50])
    assert Counter(ds.class_ids().tolist()) == {i: 100 for i in range(21)}


def test_rsicd_rsitmd_captions_without_images():
    rsicd = load_rsicd()
    assert len(rsicd) == 10921 and rsicd.items[0].image is None
    assert Counter(rsicd.split_array("official")) == {"train": 8734, "val": 1094, "test": 1093}
    assert len(load_rsitmd()) == 4743
    with pytest.raises(DataError, match="RSICD image folder not found"):
        load_rsicd(image_dir="/nonexistent/RSICD_images")


def test_sydney_karpathy_format():
    ds = load_sydney()
    assert len(ds) == 613
    assert sum(it.image is not None for it in ds.items) == 9  # only the sample images exist
    assert ds.items[0].captions[0].startswith("A residential area")


def test_pairs_jsonl(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"image": "a.png", "captions": ["a pier", "boats"], "label": "harbour"})
                 + "\n\n" + json.dumps({"image": str(img), "captions": "one caption"}) + "\n")
    ds = load_dataset(str(f))
    assert len(ds) == 2 and ds.items[0].image == img and ds.items[1].captions == ("one caption",)
    assert ds.classes == ("harbour",)


@pytest.mark.parametrize("content, message", [
    ("{not json}\n", r"pairs.jsonl:1: not valid JSON"),
    ('{"captions": ["x"]}\n', r"pairs.jsonl:1: expected an object"),
    ('{"image": "a.png", "captions": []}\n', r"pairs.jsonl:1: 'captions' must be"),
    ("\n", r"no image-caption pairs"),
])
def test_pairs_jsonl_errors_name_file_and_line(tmp_path, content, message):
    f = tmp_path / "pairs.jsonl"
    f.write_text(content)
    with pytest.raises(DataError, match=message):
        load_pairs_jsonl(f)


def test_caption_file_in_wrong_format(tmp_path):
    f = tmp_path / "caps.json"
    f.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match="caps.json: expected an object with a non-empty 'images'"):
        load_dataset(str(f))
    f.write_text(json.dumps({"images": [{"filename": "x.tif", "sentences": "oops"}]}))
    with pytest.raises(DataError, match="caps.json: record 0"):
        load_dataset(str(f))


def test_unreadable_image_is_named(tmp_path):
    from model_runtime.encoders import read_image

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        read_image(bad)
    with pytest.raises(DataError, match="Image not found"):
        read_image(tmp_path / "missing.jpg")
