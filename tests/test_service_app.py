"""The service app in-process: the catch-all handler, a failed save that must not be acknowledged, config checks."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import warnings  # noqa: E402

import numpy as np  # noqa: E402

with warnings.catch_warnings():  # starlette's note about a future httpx, raised on import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402
from service_helpers import KEY, copy_index, png_bytes  # noqa: E402

from deephash.errors import ConfigError  # noqa: E402
from deephash.index import HashIndex  # noqa: E402
from deephash.service import ServiceConfig, create_app  # noqa: E402


@pytest.fixture(scope="module")
def app_and_index(demo_index, tmp_path_factory):
    index = copy_index(demo_index, tmp_path_factory.mktemp("inproc"))
    return create_app(index, api_key=KEY), index


def test_a_real_bug_answers_500_without_a_traceback_and_is_counted(app_and_index):
    app, _ = app_and_index

    def broken():
        raise RuntimeError("a bug with a secret in its message")

    app.add_api_route("/boom", broken)
    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error (logged on the server)"}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert client.get("/api/stats").json()["internal_errors"] == 1


def test_a_failed_save_is_rolled_back_and_not_acknowledged(app_and_index, monkeypatch):
    app, index = app_and_index
    state = app.state.service
    on_disk = index.read_bytes()
    before = len(state.index)

    def failing_append(ids):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state.index, "log_added", failing_append)
    client = TestClient(app, raise_server_exceptions=False)
    r = client.post("/api/images", files={"file": ("n.png", png_bytes(seed=9), "image/png")}, headers={"X-API-Key": KEY})
    assert r.status_code == 503 and "could not write the index" in r.json()["detail"] and "not added" in r.json()["detail"]
    assert len(state.index) == before and index.read_bytes() == on_disk
    assert not index.with_name(index.name + ".journal").exists()
    uploads = index.with_name(index.name + ".uploads")
    assert not uploads.exists() or not any(uploads.iterdir())
    # the reloaded index is a fresh object: writes work again
    r = client.post("/api/images", files={"file": ("n.png", png_bytes(seed=9), "image/png")}, headers={"X-API-Key": KEY})
    assert r.status_code == 201 and len(HashIndex.load(index)) == before + 1


def test_writes_are_disabled_without_a_key_and_reads_can_be_keyed(demo_index, tmp_path):
    index = copy_index(demo_index, tmp_path)
    open_app = TestClient(create_app(index))
    r = open_app.delete("/api/images/1", headers={"X-API-Key": "anything-at-all"})
    assert r.status_code == 403 and "started without an API key" in r.json()["detail"]
    keyed = TestClient(create_app(index, api_key=KEY, read_key_required=True))
    assert keyed.get("/api/stats").status_code == 401
    assert keyed.get("/api/stats", headers={"X-API-Key": "wrong-key-123"}).status_code == 403
    assert keyed.get("/api/stats", headers={"X-API-Key": KEY}).status_code == 200
    assert keyed.get("/api/stats", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    r = keyed.get("/api/stats", params={"key": KEY})  # never in a URL: it would be logged
    assert r.status_code == 400 and "never accepted in the URL" in r.json()["detail"]
    assert keyed.get("/health").status_code == 200 and keyed.get("/").status_code == 200


@pytest.mark.parametrize("kw,msg", [
    ({"api_key": "short"}, "api_key must be at least 8 characters; got 5"),
    ({"read_key_required": True}, "read_key_required needs an api_key"),
    ({"max_upload_bytes": 10}, "max_upload_bytes must be between 1 KiB and 1 GiB; got 10"),
    ({"max_k": 0}, "max_k must be between 1 and 100000; got 0"),
])
def test_config_checks_say_what_was_expected(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        ServiceConfig(**kw)


def test_serve_refuses_a_missing_index_in_one_line(tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "deephash.cli.main", "serve", str(tmp_path / "none.dhi")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and "does not exist" in p.stderr
    assert "Traceback" not in p.stderr


def test_writes_go_to_the_journal_and_are_folded_in_when_it_grows(demo_index, tmp_path, monkeypatch):
    """An add or a remove appends one record (the index file is not rewritten); a restart replays
    the journal; past the configured share the index file is rewritten and the journal removed;
    a failed rewrite loses nothing (the change is already in the journal)."""
    from deephash.service.config import ServiceConfig
    from deephash.service.state import ServiceState

    index = copy_index(demo_index, tmp_path)
    journal = index.with_name(index.name + ".journal")
    on_disk = index.read_bytes()
    client = TestClient(create_app(index, api_key=KEY))
    r = client.post("/api/images", files={"file": ("a.png", png_bytes(seed=3), "image/png")}, headers={"X-API-Key": KEY})
    new_id = r.json()["id"]
    assert r.status_code == 201 and client.delete("/api/images/0", headers={"X-API-Key": KEY}).status_code == 200
    assert index.read_bytes() == on_disk and journal.stat().st_size > 0
    back = HashIndex.load(index)  # a restart: file + journal
    state = client.app.state.service
    assert np.array_equal(back.ids, state.index.ids) and np.array_equal(back.codes, state.index.codes)
    assert back.paths == state.index.paths and np.array_equal(back.features, state.index.features)
    assert new_id in back.ids and 0 not in back.ids

    eager = ServiceState(index, ServiceConfig(api_key=KEY, journal_compact_min_bytes=0, journal_compact_ratio=0.0))
    monkeypatch.setattr(eager.index, "save", lambda path: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    eager.remove_image(int(new_id))  # the rewrite fails: the removal is acknowledged from the journal
    assert int(new_id) not in HashIndex.load(index).ids and index.read_bytes() == on_disk
    monkeypatch.undo()
    eager.remove_image(1)  # this time the journal is folded into a rewritten index file
    assert not journal.exists() and index.read_bytes() != on_disk
    again = HashIndex.load(index)
    assert 1 not in again.ids and int(new_id) not in again.ids and len(again) == len(back) - 2


def test_a_write_after_another_process_changed_the_index_is_refused_then_succeeds(demo_index, tmp_path):
    """Another process (e.g. `deephash index --update`) appends to the index's journal while the
    service runs: the service's next write is refused with 503 and reloads, and the retry keeps both."""
    index = copy_index(demo_index, tmp_path)
    client = TestClient(create_app(index, api_key=KEY), raise_server_exceptions=False)
    other = HashIndex.load(index)
    other.remove([3])
    other.log_removed([3])
    r = client.post("/api/images", files={"file": ("a.png", png_bytes(seed=4), "image/png")}, headers={"X-API-Key": KEY})
    assert r.status_code == 503 and "another process" in r.json()["detail"]
    r = client.post("/api/images", files={"file": ("a.png", png_bytes(seed=4), "image/png")}, headers={"X-API-Key": KEY})
    assert r.status_code == 201
    back = HashIndex.load(index)
    assert 3 not in back.ids and r.json()["id"] in back.ids
