"""Issue 12 item 7: a crafted index header (valid JSON, wrong structure) or arrays that disagree with
each other are refused with one IndexFormatError line before anything is allocated or used."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from deephash.errors import IndexFormatError
from deephash.index.hash_index import HashIndex
from index_craft import small_index, spec, split_index, write_index


def _ids(a):
    return np.frombuffer(a, "<i8")


def _case(name):
    """(header edit, array edit) pairs: each makes a file whose checksums pass but whose content lies."""
    def labels_out_of_range(h, a):
        lab = np.frombuffer(a["labels"], "<i8").copy()
        lab[0] = 7  # only two class names
        a["labels"] = lab.tobytes()

    def set_(key, value):
        return lambda h, a: h.__setitem__(key, value)

    def spec_set(arr, key, value):
        return lambda h, a: spec(h, arr).__setitem__(key, value)

    cases = {
        "header-is-a-list": lambda h, a: (h.clear(), h.update({"__list__": True})),
        "missing-n_bits": lambda h, a: h.pop("n_bits"),
        "n_bits-a-string": set_("n_bits", "16"),
        "n_bits-not-multiple-of-8": set_("n_bits", 12),
        "arrays-not-a-list": set_("arrays", {"codes": 1}),
        "array-spec-missing-dtype": lambda h, a: spec(h, "codes").pop("dtype"),
        "array-object-dtype": spec_set("ids", "dtype", "|O"),
        "array-bogus-dtype": spec_set("ids", "dtype", "no-such-dtype"),
        "huge-shape": spec_set("features", "shape", [10**12, 4]),
        "negative-shape": spec_set("features", "shape", [-6, 4]),
        "codes-width-vs-n_bits": set_("n_bits", 32),
        "codes-missing": lambda h, a: (h.__setitem__("arrays", [s for s in h["arrays"] if s["name"] != "codes"]), a.pop("codes")),
        "n-mismatch": set_("n", 99),
        "n_paths-mismatch": set_("n_paths", 2),
        "next_id-zero": set_("next_id", 0),
        "next_id-a-string": set_("next_id", "x"),
        "labels-out-of-range": labels_out_of_range,
        "duplicate-ids": lambda h, a: a.__setitem__("ids", np.zeros(6, "<i8").tobytes()),
        "negative-ids": lambda h, a: a.__setitem__("ids", np.arange(-1, 5, dtype="<i8").tobytes()),
        "ids-short": lambda h, a: (a.__setitem__("ids", np.arange(5, dtype="<i8").tobytes()), spec(h, "ids").__setitem__("shape", [5])),
        "features-rows": lambda h, a: (a.__setitem__("features", a["features"][: 5 * 4 * 2]), spec(h, "features").__setitem__("shape", [5, 4])),
        "features-int": spec_set("features", "dtype", "<i2"),
        "class_names-not-strings": set_("class_names", [1, 2]),
        "meta-a-list": set_("meta", [1]),
        "code_kind-unknown": set_("code_kind", "weird"),
        "feature_dtype-unknown": set_("feature_dtype", "float64"),
        "searcher-a-number": set_("searcher", 5),
        "unknown-array": lambda h, a: (h["arrays"].append({"name": "evil", "dtype": "|u1", "shape": [3]}), a.__setitem__("evil", b"abc")),
        "duplicate-array": lambda h, a: (h["arrays"].append(dict(spec(h, "ids"))), a.__setitem__("ids2", b"")),
        "paths-count": lambda h, a: a.__setitem__("paths", a["paths"] + b"\0extra.jpg"),
    }
    return cases[name]


CASES = ["header-is-a-list", "missing-n_bits", "n_bits-a-string", "n_bits-not-multiple-of-8", "arrays-not-a-list",
         "array-spec-missing-dtype", "array-object-dtype", "array-bogus-dtype", "huge-shape", "negative-shape",
         "codes-width-vs-n_bits", "codes-missing", "n-mismatch", "n_paths-mismatch", "next_id-zero", "next_id-a-string",
         "labels-out-of-range", "duplicate-ids", "negative-ids", "ids-short", "features-rows", "features-int",
         "class_names-not-strings", "meta-a-list", "code_kind-unknown", "feature_dtype-unknown", "searcher-a-number",
         "unknown-array", "duplicate-array", "paths-count"]


@pytest.mark.parametrize("case", CASES)
def test_crafted_header_is_refused_in_one_line(case, tmp_path):
    p = small_index(tmp_path / "ix.dhi")
    header, arrays = split_index(p)
    h, a = copy.deepcopy(header), dict(arrays)
    _case(case)(h, a)
    if h.get("__list__"):
        h = [1, 2, 3]
    if case == "duplicate-array":
        a.pop("ids2")
    write_index(p, h, a)
    with pytest.raises(IndexFormatError) as e:
        HashIndex.load(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg


def test_untampered_roundtrip_still_loads(tmp_path):
    p = small_index(tmp_path / "ix.dhi")
    header, arrays = split_index(p)
    write_index(p, header, arrays)
    ix = HashIndex.load(p)
    assert len(ix) == 6 and ix._next_id == 6 and ix.class_names == ["airplane", "cat"]


def test_huge_shape_never_allocates(tmp_path, monkeypatch):
    """A header claiming 931 GiB is refused from the sizes alone: np.empty is never asked for it."""
    p = small_index(tmp_path / "ix.dhi")
    header, arrays = split_index(p)
    spec(header, "features")["shape"] = [10**12, 500]
    write_index(p, header, arrays)
    asked = []
    real_empty = np.empty
    monkeypatch.setattr(np, "empty", lambda shape, *a, **k: (asked.append(shape), real_empty(shape, *a, **k))[1])
    with pytest.raises(IndexFormatError, match="features"):
        HashIndex.load(p)
    assert all(np.prod(s) < 10**9 for s in asked)
