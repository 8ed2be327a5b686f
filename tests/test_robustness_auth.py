"""Issue 12 item 4: the service's write key travels only in a header (``X-API-Key`` or
``Authorization: Bearer``), is refused in a URL, never reaches the access log, is compared in
constant time, and the web page never puts it in a URL."""
from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from deephash.index import HashIndex
from deephash.service import create_app
from service_helpers import KEY, Server, copy_index, png_bytes

APP_JS = Path(__file__).resolve().parents[1] / "src" / "deephash" / "service" / "static" / "app.js"


def _upload(seed: int = 0) -> dict:
    return {"file": (f"u{seed}.png", png_bytes(seed=seed), "image/png")}


@pytest.fixture()
def keyed(demo_index, tmp_path):
    index = copy_index(demo_index, tmp_path)
    return TestClient(create_app(index, api_key=KEY, read_key_required=True)), index


@pytest.mark.parametrize("param", ["key", "api_key", "token"])
def test_a_key_in_the_url_is_refused_for_writes_and_keyed_reads(keyed, param):
    client, index = keyed
    n = len(HashIndex.load(index))
    r = client.post(f"/api/images?{param}={KEY}", files=_upload())
    assert r.status_code == 400 and "never accepted in the URL" in r.json()["detail"]
    # even together with a valid header: the URL form is refused, so no client keeps using it
    r = client.post(f"/api/images?{param}={KEY}", files=_upload(), headers={"X-API-Key": KEY})
    assert r.status_code == 400
    assert len(HashIndex.load(index)) == n
    r = client.get(f"/api/images/1/thumb?{param}={KEY}")
    assert r.status_code == 400


@pytest.mark.parametrize("headers", [{"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"},
                                     {"Authorization": f"bearer {KEY}"}])
def test_the_key_in_a_header_is_accepted(keyed, headers):
    client, index = keyed
    r = client.post("/api/images", files=_upload(1), headers=headers)
    assert r.status_code == 201, r.text
    assert client.get(f"/api/images/{r.json()['id']}/thumb", headers=headers).status_code == 200
    assert client.delete(f"/api/images/{r.json()['id']}", headers=headers).status_code == 200


def test_keys_are_compared_in_constant_time(keyed, monkeypatch):
    import hmac

    import deephash.service.auth as auth

    seen = []
    real = hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    client, _ = keyed
    assert client.get("/api/stats", headers={"X-API-Key": "wrong-key-xyz"}).status_code == 403
    assert client.get("/api/stats", headers={"X-API-Key": KEY}).status_code == 200
    assert seen == [(b"wrong-key-xyz", KEY.encode()), (KEY.encode(), KEY.encode())]


def test_the_access_log_never_holds_the_key(demo_index, tmp_path):
    index = copy_index(demo_index, tmp_path / "idx")
    log = tmp_path / "server.log"
    srv = Server(index, log, "--api-key", KEY, "--log-level", "info").start()  # the later --log-level wins
    try:
        with srv.client() as c:
            assert c.post(f"/api/images?key={KEY}", files=_upload(2)).status_code == 400
            assert c.get(f"/api/stats?api_key={KEY}&x=1").status_code == 200  # reads are open here
            r = c.post("/api/images", files=_upload(3), headers={"X-API-Key": KEY})
            assert r.status_code == 201
    finally:
        srv.stop()
    text = log.read_text()
    assert re.search(r'"POST /api/images\?key=\[redacted\] HTTP/1.1" 400', text), text[-2000:]
    assert re.search(r'"POST /api/images HTTP/1.1" 201', text), text[-2000:]
    assert "api_key=[redacted]&x=1" in text
    assert KEY not in text


def test_the_page_sends_the_key_only_in_a_header():
    js = APP_JS.read_text()
    assert "key=" not in js and "withKey" not in js
    assert '"X-API-Key": state.key' in js
