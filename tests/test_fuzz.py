"""The fuzz suite (issue 12): a hostile corpus built on the fly, run through every entry point (the
Python API, the command line, the HTTP service), and a byte-level fuzzer over the three file formats
deephash writes (index, journal, checkpoint).

The contract every input must meet: it is indexed, or skipped and reported (with a one-line reason),
or ignored as a non-image, or refused with a one-line message and a non-zero exit / a 4xx — never a
traceback, a 5xx, a hang, or a silently different answer (a damaged file either is refused or loads
to exactly a state that was written). Hypothesis drives the mutations, with bounded examples and no
deadline so the suite stays around two minutes on two cores.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deephash import api
from deephash.cli.main import cli
from deephash.data import open_archive
from deephash.data.images import decode_image
from deephash.errors import DataError, DeepHashError, IndexFormatError
from deephash.index import HashIndex
from deephash.index import hash_index as H
from deephash.index import journal as J
from robust_fixtures import draw_image, synth_archive, synth_ckpt  # noqa: F401  (session fixtures)
from service_helpers import KEY, bomb_png

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ----------------------------------------------------------------------------- the contract
@contextlib.contextmanager
def no_hang(seconds: int = 60):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""
    def boom(*_):
        raise TimeoutError(f"hung for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def one_line(msg: str) -> str:
    assert msg and "\n" not in msg.strip() and "Traceback" not in msg, msg
    return msg


def refused_cleanly(r) -> bool:
    """A CliRunner result: success, or exit 2 with exactly one ``error:`` line and no traceback."""
    assert "Traceback" not in r.output, r.output
    if r.exit_code == 0:
        return False
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    errs = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(errs) == 1, r.output
    return True


# ----------------------------------------------------------------------------- the hostile corpus
def _img(mode: str = "RGB", size=(24, 24), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def _save(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _exif_jpeg() -> bytes:
    ex = Image.Exif()
    ex[0x0112] = 6  # orientation: rotate 90
    return _save(_img(seed=4), "JPEG", exif=ex.tobytes())


def _gif_anim() -> bytes:
    frames = [_img("P", seed=i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _bad_crc_png() -> bytes:
    b = bytearray(_save(_img(seed=5), "PNG"))
    i = b.find(b"IDAT") + 12
    b[i] ^= 0xFF  # inside the compressed data: its CRC no longer matches
    return bytes(b)


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    return buf.getvalue()


#: name (bytes: file names are bytes on Linux) -> content, for images that must be indexed
GOOD = {
    b"one-pixel.png": lambda: _save(_img(size=(1, 1)), "PNG"),
    b"grey.png": lambda: _save(_img("L", seed=1), "PNG"),
    b"grey-alpha.png": lambda: _save(_img("LA", seed=2), "PNG"),
    b"rgba.png": lambda: _save(_img("RGBA", seed=3), "PNG"),
    b"sixteen-bit.png": lambda: _save(Image.fromarray((np.arange(24 * 24, dtype=np.uint16) * 97).reshape(24, 24)), "PNG"),
    b"palette-transparent.gif": lambda: _save(_img("P", seed=6), "GIF", transparency=0),
    b"animated.gif": _gif_anim,
    b"cmyk.jpg": lambda: _save(_img("CMYK", seed=7), "JPEG"),
    b"progressive.jpg": lambda: _save(_img(seed=8), "JPEG", progressive=True),
    b"exif-rotated.jpg": _exif_jpeg,
    b"tall-thin.png": lambda: _save(_img(size=(1, 2000), seed=9), "PNG"),
    b"image.tiff": lambda: _save(_img(seed=10), "TIFF"),
    b"image.bmp": lambda: _save(_img(seed=11), "BMP"),
    b"image.webp": lambda: _save(_img(seed=12), "WEBP"),
    b"image.ppm": lambda: _save(_img(seed=13), "PPM"),
    b"UPPER.JPG": lambda: _save(_img(seed=14), "JPEG"),
    b"with space.png": lambda: _save(_img(seed=15), "PNG"),
    "ünïcødé-猫.png".encode(): lambda: _save(_img(seed=16), "PNG"),
    b"latin1-caf\xe9.png": lambda: _save(_img(seed=17), "PNG"),
    b"new\nline.png": lambda: _save(_img(seed=18), "PNG"),
    b"-starts-with-dash.png": lambda: _save(_img(seed=19), "PNG"),
    b"%s%n$(reboot);'.png": lambda: _save(_img(seed=20), "PNG"),
    b"l" * 240 + b".png": lambda: _save(_img(seed=21), "PNG"),
    b"png-named.jpg": lambda: _save(_img(seed=22), "PNG"),  # the suffix lies; the content is an image
}
#: files that must be skipped and reported
BAD = {
    b"empty.jpg": lambda: b"",
    b"truncated.jpg": lambda: _save(_img(size=(64, 64), seed=23), "JPEG")[:300],
    b"random.png": lambda: np.random.default_rng(1).bytes(3000),
    b"text.jpg": lambda: b"this is not an image\n" * 10,
    b"html.png": lambda: b"<html><body><script>alert(1)</script></body></html>",
    b"svg.png": lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    b"zip.jpg": _zip_bytes,
    b"bad-crc.png": _bad_crc_png,
    b"bomb.png": lambda: bomb_png(100_000, 100_000),
}
#: files that are no images by their suffix: ignored, and not reported as bad images
IGNORED = {b"notes.txt": b"holiday 2019", b"Thumbs.db": b"\x00" * 64, b"desktop.ini": b"[x]",
           b"photo.heic": b"\x00\x00\x00\x18ftypheic", b"README": b"read me", b"labels.csv": b"a,b\n"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """``root/{cat,dog}/...``: every kind of file above, plus a folder named x.jpg, a pipe, links
    leaving the archive, a broken link and hidden files; ``cat`` holds the odd ones."""
    root = tmp_path_factory.mktemp("hostile") / "archive"
    bcat = os.fsencode(root / "cat")
    os.makedirs(bcat)
    for name, make in {**GOOD, **BAD}.items():
        with open(os.path.join(bcat, name), "wb") as fh:
            fh.write(make())
    for name, data in IGNORED.items():
        with open(os.path.join(bcat, name), "wb") as fh:
            fh.write(data)
    for i in range(6):
        draw_image(root / "dog" / f"{i}.png", seed=200 + i)
    (root / "cat" / ".hidden.png").write_bytes(_save(_img(seed=30), "PNG"))
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    os.mkfifo(root / "cat" / "pipe.jpg")
    os.symlink("/etc/passwd", root / "cat" / "passwd.jpg")
    os.symlink("/etc", root / "cat" / "etc-folder")
    os.symlink("nowhere.png", root / "cat" / "broken.png")
    (root / "dog" / "folder.jpg").mkdir()
    draw_image(root / "dog" / "folder.jpg" / "inside.png", seed=300)  # an image below a folder named x.jpg
    return root


def _rel(name: bytes, cls: str = "cat") -> str:
    return os.fsdecode(cls.encode() + b"/" + name)


EXPECT_INDEXED = {_rel(n) for n in GOOD} | {f"dog/{i}.png" for i in range(6)} | {"dog/folder.jpg/inside.png"}
EXPECT_SKIPPED = {_rel(n) for n in BAD} | {"cat/pipe.jpg", "cat/passwd.jpg", "cat/etc-folder", "cat/broken.png"}
EXPECT_IGNORED = {_rel(n) for n in IGNORED}


@pytest.fixture(scope="module")
def built(corpus, synth_ckpt, tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile_index")
    ck = d / "model.pt"
    shutil.copyfile(synth_ckpt, ck)
    with no_hang(300):
        b = api.build_index(str(corpus), ck, d / "index.dhi", progress=False)
    return b


def test_the_python_api_indexes_skips_or_ignores_every_file(built):
    b = built
    indexed = set(b.index.paths)
    skipped = dict(b.skipped)
    assert indexed == EXPECT_INDEXED
    assert set(skipped) == EXPECT_SKIPPED
    assert set(b.ignored) == EXPECT_IGNORED
    for p, why in skipped.items():
        one_line(why)
    assert "more than the limit" in skipped["cat/bomb.png"]
    assert "symbolic link leaving the archive" in skipped["cat/passwd.jpg"]
    assert "not a regular file" in skipped["cat/pipe.jpg"]
    assert "empty file" in skipped["cat/empty.jpg"]
    # saved and loaded back: every name exactly (bytes names included)
    back = HashIndex.load(b.path)
    assert back.paths == b.index.paths and np.array_equal(back.codes, b.index.codes)


def test_the_command_line_indexes_and_searches_the_corpus(corpus, built, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.dhi"
    with no_hang(300):
        r = runner.invoke(cli, ["index", str(corpus), "--model", str(built.path.parent / "model.pt"), "--out", str(out)])
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert f"skipped {len(EXPECT_SKIPPED)} file(s)" in r.output
    assert f"ignored {len(EXPECT_IGNORED)} file(s) that are not images" in r.output
    assert sorted(HashIndex.load(out).paths) == sorted(EXPECT_INDEXED)
    # every file of the corpus as a query in one run: answered, or skipped and reported
    files = sorted(Path(os.fsdecode(os.path.join(os.fsencode(corpus / "cat"), n))) for n in [*GOOD, *BAD])
    with no_hang(300):
        r = runner.invoke(cli, ["search", str(out), *map(str, files), "-k", "3", "--json"])
    assert r.exit_code == 0 and "Traceback" not in r.output
    answers = [json.loads(ln) for ln in r.output.splitlines() if ln.startswith("{")]
    assert len(answers) == len(GOOD)
    assert f"skipped {len(BAD)} file(s)" in r.output
    # one bad query alone: refused in one line, exit 2
    for name in BAD:
        bad = os.fsdecode(os.path.join(os.fsencode(corpus / "cat"), name))
        r = runner.invoke(cli, ["search", str(out), bad])
        assert refused_cleanly(r), r.output


def test_the_python_api_answers_or_refuses_each_query(corpus, built):
    loaded = api.open_for_search(built.path)
    cat = os.fsencode(corpus / "cat")
    for name in [*GOOD, *BAD, b"pipe.jpg", b"passwd.jpg", b"broken.png"]:
        p = os.fsdecode(os.path.join(cat, name))
        with no_hang(60):
            try:
                res = api.search(built.path, [p], k=5, loaded=loaded)
            except DeepHashError as e:
                assert name not in GOOD, (name, e)
                one_line(str(e))
                continue
        assert name in GOOD, name
        assert res[0].json["count"] == 5


@pytest.fixture(scope="module")
def client(built, tmp_path_factory):
    from fastapi.testclient import TestClient

    from deephash.service import create_app

    d = tmp_path_factory.mktemp("hostile_service")
    shutil.copyfile(built.path, d / "index.dhi")
    shutil.copyfile(built.path.parent / "model.pt", d / "model.pt")
    return TestClient(create_app(d / "index.dhi", api_key=KEY), raise_server_exceptions=False)


def _service_contract(r, good: bool | None) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if good is True:
        assert r.status_code in (200, 201), r.text
    if r.status_code >= 400:
        assert good is not True
        one_line(r.json()["detail"])


def test_the_service_answers_or_refuses_every_upload(client):
    for name, make in {**GOOD, **BAD}.items():
        data = make()
        fname = os.fsdecode(name)
        files = {"file": (fname.encode("utf-8", "surrogateescape").decode("latin-1"), data, "application/octet-stream")}
        with no_hang(60):
            _service_contract(client.post("/api/search", params={"k": 3}, files=files), name in GOOD)
            r = client.post("/api/images", files=files, headers={"X-API-Key": KEY})
        _service_contract(r, name in GOOD)
        if r.status_code == 201:
            i = r.json()["id"]
            assert client.get(f"/api/images/{i}/thumb").status_code == 200
            assert client.get(f"/api/images/{i}").status_code == 200
            assert client.delete(f"/api/images/{i}", headers={"X-API-Key": KEY}).status_code == 200
    for name, data in IGNORED.items():
        _service_contract(client.post("/api/search", files={"file": (os.fsdecode(name), data)}), False)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_random_bytes_through_decode_and_the_service(client, data):
    with no_hang(30):
        try:
            im = decode_image(data)
            assert im.mode == "RGB" and im.size[0] > 0
        except DataError as e:
            one_line(str(e))
        _service_contract(client.post("/api/search", files={"file": ("x.bin", data)}), None)


_SEEDS = {"png": lambda: _save(_img(seed=40), "PNG"), "jpeg": lambda: _save(_img(seed=41), "JPEG"),
          "gif": _gif_anim, "bmp": lambda: _save(_img(seed=42), "BMP"), "tiff": lambda: _save(_img(seed=43), "TIFF"),
          "webp": lambda: _save(_img(seed=44), "WEBP")}


@st.composite
def mutated_image(draw):
    data = bytearray(_SEEDS[draw(st.sampled_from(sorted(_SEEDS)))]())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[i:i + draw(st.integers(1, 32))] = b"\x00" * 8
    return bytes(data)


@FUZZ
@given(data=mutated_image())
def test_fuzz_mutated_images_decode_or_are_refused(client, data):
    with no_hang(30):
        try:
            im = decode_image(data)
            assert im.mode == "RGB" and im.size[0] * im.size[1] > 0
        except DataError as e:
            one_line(str(e))
        _service_contract(client.post("/api/search", params={"k": 2}, files={"file": ("m.png", data)}), None)


_NAME = st.binary(min_size=1, max_size=120).filter(
    lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b"..") and not b.startswith(b"."))


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_NAME, min_size=1, max_size=4, unique=True))
def test_fuzz_file_names_survive_listing_saving_and_display(tmp_path_factory, names):
    """Any Linux file name (bytes but / and NUL): listed, stored, loaded back exactly, shown in one line."""
    from deephash.names import display_path

    root = tmp_path_factory.mktemp("names")
    png = _save(_img(seed=50), "PNG")
    for n in names:
        with open(os.path.join(os.fsencode(root), n + b".png"), "wb") as fh:
            fh.write(png)
    a = open_archive(root)
    assert sorted(os.fsencode(p) for p in a.paths) == sorted(n + b".png" for n in names)
    ix = HashIndex(16, searcher="numpy")
    ix.add(np.zeros((len(a.paths), 2), np.uint8), paths=a.paths)
    back = HashIndex.load(ix.save(root / ".i.dhi"))
    assert back.paths == a.paths
    for p in back.paths:
        shown = display_path(p)
        shown.encode("utf-8")
        assert "\n" not in shown and "\r" not in shown


# ----------------------------------------------------------------------------- byte-level: index files
def _state(ix: HashIndex) -> tuple:
    """Everything a search answer depends on, comparable."""
    return (ix.n_bits, ix.codes.tobytes(), ix.ids.tobytes(), tuple(ix.paths),
            None if ix.labels is None else ix.labels.tobytes(), None if ix.features is None else ix.features.tobytes(),
            tuple(ix.class_names or ()), json.dumps(ix.meta, sort_keys=True), ix._next_id)


def _index_sections(data: bytes) -> list[tuple[str, int, int]]:
    _m, _v, _f, hlen = H._PREAMBLE.unpack_from(data, 0)
    header = json.loads(data[H._PREAMBLE.size:H._PREAMBLE.size + hlen])
    out = [("magic", 0, 8), ("version", 8, 12), ("flags", 12, 16), ("header length", 16, 24),
           ("header", 24, 24 + hlen)]
    pos = 24 + hlen
    for s in header["arrays"]:
        out.append((f"array {s['name']}", pos, pos + s["nbytes"]))
        pos += s["nbytes"]
    out.append(("trailer", pos, pos + len(H._TRAILER)))
    assert out[-1][2] == len(data)
    return out


@pytest.fixture(scope="module")
def index_file(tmp_path_factory) -> tuple[Path, bytes, tuple]:
    from index_craft import small_index

    p = small_index(tmp_path_factory.mktemp("fuzz_index") / "i.dhi", n=7)
    ix = HashIndex.load(p)
    ix.meta["model_identity"] = {"method": "itq", "bits": 16, "digest": "0123456789abcdef"}
    ix.save(p)
    return p, p.read_bytes(), _state(HashIndex.load(p))


def _load_contract(path: Path, allowed: list[tuple]) -> str:
    """Load ``path``: refused in one line (IndexFormatError / DataError), or exactly one of ``allowed``."""
    with no_hang(30):
        try:
            ix = HashIndex.load(path)
        except (IndexFormatError, DataError) as e:
            one_line(str(e))
            return "refused"
    st_ = _state(ix)
    assert st_ in allowed, "a damaged file loaded to a state that was never written"
    if len(ix):  # and it answers
        d, i = ix.search(ix.codes[:1], 3)
        assert i[0, 0] >= 0
    return "loaded"


def test_index_truncated_at_every_section_boundary_is_refused(index_file, tmp_path):
    _, data, _ = index_file
    cuts = sorted({c + d for _, a, b in _index_sections(data) for c in (a, b) for d in (-1, 0, 1)
                   if 0 <= c + d < len(data)})
    p = tmp_path / "t.dhi"
    for c in cuts:
        p.write_bytes(data[:c])
        assert _load_contract(p, []) == "refused", c
    p.write_bytes(data + b"\0")  # padded
    assert _load_contract(p, []) == "refused"


def test_index_flips_in_every_section_are_refused_or_harmless(index_file, tmp_path):
    _, data, state = index_file
    p = tmp_path / "f.dhi"
    for name, a, b in _index_sections(data):
        offsets = sorted({a, (a + b) // 2, b - 1} | set(range(a, b, max(1, (b - a) // 24))))
        for off in offsets:
            for bit in (0, 7):
                bad = bytearray(data)
                bad[off] ^= 1 << bit
                p.write_bytes(bytes(bad))
                how = _load_contract(p, [state])
                if name not in ("flags", "version"):  # unchecked (flags) or an older version: same content
                    assert how == "refused", (name, off, bit)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=8)), min_size=1, max_size=3))
def test_fuzz_index_overwrites_anywhere(index_file, tmp_path_factory, edits):
    _, data, state = index_file
    bad = bytearray(data)
    for off, b in edits:
        off %= len(bad)
        bad[off:off + len(b)] = b
    p = tmp_path_factory.mktemp("ow") / "o.dhi"
    p.write_bytes(bytes(bad[: len(data)]))
    _load_contract(p, [state])


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=6)


@FUZZ
@given(key=st.sampled_from(["n_bits", "n", "next_id", "searcher", "feature_dtype", "code_kind", "class_names", "meta",
                            "n_paths", "path_encoding", "arrays", "arrays.0.shape", "arrays.1.dtype", "arrays.2.shape",
                            "arrays.3.shape", "arrays.0.name"]), value=_JSON)
def test_fuzz_structurally_valid_but_inconsistent_headers(index_file, tmp_path_factory, key, value):
    """A header that is valid JSON, its checksums and digest recomputed, one field replaced by any
    JSON value: refused in one line, or (the value happened to be harmless) a consistent index."""
    from index_craft import split_index, write_index

    src, _, _ = index_file
    header, arrays = split_index(src)
    target, *rest = key.split(".")
    if rest:
        header[target][int(rest[0])][rest[1]] = value
    else:
        header[target] = value
    p = write_index(tmp_path_factory.mktemp("hdr") / "h.dhi", header, arrays)
    with no_hang(30):
        try:
            ix = HashIndex.load(p)
        except (IndexFormatError, DataError) as e:
            one_line(str(e))
            return
    n = len(ix)
    assert len(ix.codes) == len(ix.ids) == len(ix.paths) == n and ix.codes.shape[1] * 8 == ix.n_bits
    assert ix.labels is None or len(ix.labels) == n
    if n:
        ix.search(ix.codes[:1], 2)


# ----------------------------------------------------------------------------- byte-level: journals
@pytest.fixture(scope="module")
def journal_file(tmp_path_factory):
    """An index and a journal of three records (add 2, remove 1, add 1), with the state after each."""
    from index_craft import small_index

    p = small_index(tmp_path_factory.mktemp("fuzz_journal") / "j.dhi", n=5)
    ix = HashIndex.load(p)
    states = [_state(ix)]
    rng = np.random.default_rng(3)

    def add(k):
        ids = ix.add(rng.integers(0, 256, (k, 2), dtype=np.uint8), paths=[f"new/{rng.integers(1e9)}.jpg" for _ in range(k)],
                     labels=np.zeros(k, np.int64), features=rng.normal(size=(k, 4)).astype(np.float32))
        ix.log_added(ids)

    add(2)
    states.append(_state(ix))
    ix.remove([1])
    ix.log_removed([1])
    states.append(_state(ix))
    add(1)
    states.append(_state(ix))
    jp = J.journal_path(p)
    assert _state(HashIndex.load(p)) == states[-1]
    return p, p.read_bytes(), jp.read_bytes(), states


def _journal_sections(data: bytes) -> list[tuple[str, int, int]]:
    out = [("head", 0, J._HEAD.size)]
    pos, k = J._HEAD.size, 0
    while pos < len(data):
        _tag, _op, n = J._REC.unpack_from(data, pos)
        out += [(f"record {k} head", pos, pos + J._REC.size), (f"record {k} payload", pos + J._REC.size, pos + J._REC.size + n),
                (f"record {k} crc", pos + J._REC.size + n, pos + J._REC.size + n + J._CRC.size)]
        pos += J._REC.size + n + J._CRC.size
        k += 1
    assert pos == len(data)
    return out


def _write_pair(d: Path, index_bytes: bytes, journal_bytes: bytes) -> Path:
    p = d / "j.dhi"
    p.write_bytes(index_bytes)
    J.journal_path(p).write_bytes(journal_bytes)
    return p


def test_journal_truncated_at_every_boundary_loads_a_written_state(journal_file, tmp_path):
    _, ib, jb, states = journal_file
    secs = _journal_sections(jb)
    for c in sorted({c + d for _, a, b in secs for c in (a, b) for d in (-1, 0, 1) if 0 <= c + d <= len(jb)}):
        p = _write_pair(tmp_path, ib, jb[:c])
        assert _load_contract(p, states) == "loaded", c  # a cut journal is an interrupted append: a prefix


def test_journal_flips_in_every_section_load_a_written_state_or_are_refused(journal_file, tmp_path):
    _, ib, jb, states = journal_file
    for name, a, b in _journal_sections(jb):
        for off in sorted({a, (a + b) // 2, b - 1}):
            bad = bytearray(jb)
            bad[off] ^= 0x10
            p = _write_pair(tmp_path, ib, bytes(bad))
            how = _load_contract(p, states)
            if name == "head":  # its checksum: never taken for an older journal and silently ignored
                assert how == "refused", off


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=6)), min_size=1, max_size=3),
       cut=st.integers(0, 10**6))
def test_fuzz_journal_overwrites_and_cuts(journal_file, tmp_path_factory, edits, cut):
    _, ib, jb, states = journal_file
    bad = bytearray(jb)
    for off, b in edits:
        off %= len(bad)
        bad[off:off + len(b)] = b
    bad = bytes(bad[: len(jb)])[: cut % (len(jb) + 1)]
    p = _write_pair(tmp_path_factory.mktemp("jfz"), ib, bad)
    _load_contract(p, states)


# ----------------------------------------------------------------------------- byte-level: checkpoints
@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory):
    from deephash.hashers import create_hasher

    X = np.random.default_rng(0).normal(size=(200, 32)).astype(np.float32)
    h = create_hasher("itq", 16, seed=0)
    h.fit(X)
    p = h.save(tmp_path_factory.mktemp("fuzz_ck") / "c.pt", backbone="efficientnet-lite0", preprocessing={"size": 32})
    return p, p.read_bytes(), h.encode(X[:20]), X[:20]


def _ckpt_sections(path: Path, data: bytes) -> list[tuple[str, int, int]]:
    out = []
    with zipfile.ZipFile(path) as z:
        infos = sorted(z.infolist(), key=lambda i: i.header_offset)
    for i in infos:
        name_len, extra_len = struct.unpack_from("<HH", data, i.header_offset + 26)
        start = i.header_offset + 30 + name_len + extra_len
        out += [(f"{i.filename} local header", i.header_offset, start), (f"{i.filename} data", start, start + i.compress_size)]
    out.append(("central directory", out[-1][2], len(data)))
    return out


def _ckpt_contract(path: Path, ref_codes, X) -> str:
    from deephash.hashers import load_hasher

    with no_hang(30):
        try:
            h, _ = load_hasher(path)
        except DeepHashError as e:
            one_line(str(e))
            return "refused"
    assert np.array_equal(h.encode(X), ref_codes), "a damaged checkpoint loaded with different weights"
    return "loaded"


def test_checkpoint_truncated_at_every_member_boundary_is_refused(ckpt_file, tmp_path):
    path, data, codes, X = ckpt_file
    p = tmp_path / "t.pt"
    for c in sorted({c + d for _, a, b in _ckpt_sections(path, data) for c in (a, b) for d in (-1, 0, 1)
                     if 0 <= c + d < len(data)}):
        p.write_bytes(data[:c])
        assert _ckpt_contract(p, codes, X) == "refused", c


def test_checkpoint_flips_in_every_member_are_refused_or_harmless(ckpt_file, tmp_path):
    path, data, codes, X = ckpt_file
    p = tmp_path / "f.pt"
    for name, a, b in _ckpt_sections(path, data):
        for off in sorted({a, (a + b) // 2, max(a, b - 1)}):
            bad = bytearray(data)
            bad[off] ^= 0x01
            p.write_bytes(bytes(bad))
            how = _ckpt_contract(p, codes, X)
            if name.endswith(" data"):
                assert how == "refused", (name, off)


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=8)), min_size=1, max_size=3))
def test_fuzz_checkpoint_overwrites(ckpt_file, tmp_path_factory, edits):
    _, data, codes, X = ckpt_file
    bad = bytearray(data)
    for off, b in edits:
        off %= len(bad)
        bad[off:off + len(b)] = b
    p = tmp_path_factory.mktemp("cfz") / "o.pt"
    p.write_bytes(bytes(bad[: len(data)]))
    _ckpt_contract(p, codes, X)


# ----------------------------------------------------------------------------- byte-level: archives
def _archive_seeds() -> dict[str, bytes]:
    """A small .zip, .tar and .tar.gz: two classes of images, a folder entry, a link inside, a text file."""
    import tarfile

    members = {"top/cat/a.png": _save(_img(seed=60), "PNG"), "top/dog/b.jpg": _save(_img(seed=61), "JPEG"),
               "top/notes.txt": b"hello"}
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("top/", b"")
        for n, d in members.items():
            z.writestr(n, d)
        link = zipfile.ZipInfo("top/cat/link.png")
        link.external_attr = 0o120777 << 16
        z.writestr(link, "a.png")
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w") as t:
        for n, d in members.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(d)
            t.addfile(ti, io.BytesIO(d))
        ti = tarfile.TarInfo("top/cat/link.png")
        ti.type, ti.linkname = tarfile.SYMTYPE, "a.png"
        t.addfile(ti)
    import gzip

    return {"zip": zbuf.getvalue(), "tar": tbuf.getvalue(), "tar.gz": gzip.compress(tbuf.getvalue(), mtime=0)}


_ARCHIVES = _archive_seeds()


@contextlib.contextmanager
def _cache_in(d: Path):
    saved = os.environ.get("DEEPHASH_CACHE")
    os.environ["DEEPHASH_CACHE"] = str(d)
    try:
        yield d
    finally:
        os.environ["DEEPHASH_CACHE"] = saved if saved is not None else ""
        if saved is None:
            del os.environ["DEEPHASH_CACHE"]


@FUZZ
@given(kind=st.sampled_from(sorted(_ARCHIVES)), gz=st.booleans(),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=8)), min_size=1, max_size=3),
       cut=st.none() | st.integers(0, 10**6))
def test_fuzz_archives_unpack_inside_the_cache_or_are_refused(tmp_path_factory, kind, gz, edits, cut):
    """Overwritten and cut .zip / .tar / .tar.gz bytes (a .tar also gzip'ed after the damage, so that
    damaged headers reach the tar reader): listed with every file inside the unpacked folder and every
    skip reason one line, or refused in one line — and nothing is written outside the cache."""
    import gzip

    bad = bytearray(_ARCHIVES[kind])
    for off, b in edits:
        off %= len(bad)
        bad[off:off + len(b)] = b
    bad = bytes(bad[: len(_ARCHIVES[kind])])
    if cut is not None:
        bad = bad[: max(1, cut % (len(bad) + 1))]
    suffix = kind
    if kind == "tar" and gz:
        bad, suffix = gzip.compress(bad, mtime=0), "tar.gz"
    _archive_contract(tmp_path_factory.mktemp("afz"), suffix, bad)


def _archive_contract(d: Path, suffix: str, data: bytes):
    """Open the archive ``data`` with its cache in ``d``: listed with every file inside the unpacked
    folder and one-line skip reasons, or refused in one line; nothing is written outside the cache."""
    arc = d / f"a.{suffix}"
    arc.write_bytes(data)
    with _cache_in(d / "cache") as cache, no_hang(60):
        try:
            a = open_archive(arc)
        except DataError as e:
            one_line(str(e))
            a = None
    assert {p.name for p in d.iterdir()} <= {arc.name, "cache"}
    if a is None:  # nothing half-unpacked is left behind
        assert not any(p.name.startswith(".unpack-") for p in (cache / "archives").glob("*"))
        return
    for i in range(len(a)):
        assert Path(os.path.realpath(a.abspath(i))).is_relative_to(os.path.realpath(cache)), a.paths[i]
    for _name, why in a.skipped:
        one_line(why)
    return a


_MEMBER = st.lists(st.sampled_from(["..", ".", "", "a", "b", "top", "x.png"]), min_size=1, max_size=5).map("/".join)


@FUZZ
@given(members=st.lists(st.tuples(st.sampled_from(["file", "dir", "link"]), st.booleans(), _MEMBER, _MEMBER),
                        min_size=1, max_size=6))
def test_fuzz_zip_member_names_and_links_stay_inside(tmp_path_factory, members):
    """Members named and linked with any mix of ``..``, ``.``, empty parts and a leading ``/`` — files,
    folders, links, in any order: nothing is written or linked outside the unpacked folder."""
    png = _save(_img(seed=62), "PNG")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("top/cat/keep.png", png)
        for kind, absolute, name, target in members:
            zi = zipfile.ZipInfo(("/" if absolute else "") + name + ("/" if kind == "dir" else ""))
            zi.external_attr = {"file": 0o100644, "dir": 0o040755, "link": 0o120777}[kind] << 16
            z.writestr(zi, {"file": png, "dir": b"", "link": target.encode()}[kind])
    d = tmp_path_factory.mktemp("zfz")
    _archive_contract(d, "zip", buf.getvalue())
    unpacked = os.path.realpath(d / "cache" / "archives")
    for dirpath, dirnames, filenames in os.walk(d / "cache"):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            assert Path(os.path.realpath(p)).is_relative_to(unpacked), (p, os.readlink(p) if os.path.islink(p) else None)
