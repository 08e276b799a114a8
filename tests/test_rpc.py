"""lathe.rpc's security properties, each against a scripted websocket client (no browser needed):
token required, loopback only unless asked, capped frames, nothing unpickled, disconnects survived."""

import contextlib
import json
import pickle
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("websockets", reason="lathe.rpc needs the websockets package")
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from lathe.errors import TargetError  # noqa: E402
from lathe.rpc import RPCError, Session  # noqa: E402


@pytest.fixture
def session():
    s = Session(timeout=10, max_message=1 << 16)
    yield s
    s.close()


def ws_url(s: Session, token: str | None) -> str:
    return f"ws://127.0.0.1:{s.port}/ws" + (f"?token={token}" if token is not None else "")


def fake_browser(s: Session, answer) -> threading.Thread:
    """A client that answers each request with answer(request) -> (reply dict, binary or None) or None (hang up)."""
    conn = connect(ws_url(s, s.token))

    def serve() -> None:
        with conn, contextlib.suppress(ConnectionClosed):  # the server may end it (the size cap)
            for text in conn:
                req = json.loads(text)
                if req.get("binary"):
                    conn.recv()
                out = answer(req)
                if out is None:
                    return
                reply, data = out
                conn.send(json.dumps({"id": req["id"], "ok": True, "binary": data is not None, **reply}))
                if data is not None:
                    conn.send(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    s.wait(5)
    return t


def test_refuses_a_socket_without_the_right_token(session) -> None:
    for token in (None, "", "guess", session.token[:-1]):
        with pytest.raises(InvalidStatus) as err:
            connect(ws_url(session, token))
        assert err.value.response.status_code == 403
    assert not session._connected.is_set()
    with connect(ws_url(session, session.token)):  # the right token is let in
        session.wait(5)


def test_serves_only_the_runtime_files(session) -> None:
    base = f"http://127.0.0.1:{session.port}"
    for runtime in ("/lathe.js", "/webgpu.js"):
        with urllib.request.urlopen(base + runtime) as r:
            assert b"lathe" in r.read()
    for path in ("/../pyproject.toml", "/lathe/rpc/server.py", "/web/lathe.js", "/etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + path)
        assert err.value.code == 404
        err.value.close()  # an open response would hold the server's shutdown


def test_binds_loopback_unless_asked() -> None:
    s = Session()
    assert s._server.socket.getsockname()[0] == "127.0.0.1"
    s.close()
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        with pytest.raises(TargetError, match="beyond loopback"):
            Session(host=host)
    s = Session(host="0.0.0.0", allow_remote=True)  # explicit: allowed, and still behind the token
    assert s._server.socket.getsockname()[0] == "0.0.0.0"
    s.close()


def test_caps_message_sizes(session) -> None:
    fake_browser(session, lambda req: ({}, b"\0" * (1 << 17)))  # a reply frame twice the 64 KiB cap
    with pytest.raises(RPCError, match="disconnected"):
        session.read(1, "y")


def test_never_unpickles_what_it_receives(session, tmp_path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    payload = pickle.dumps(Evil())
    payload += b"." * (-len(payload) % 4)  # whole float32s, still a valid pickle (STOP comes first)
    fake_browser(session, lambda req: ({}, payload))
    got = session.read(1, "y")  # bytes are only ever read as little-endian float32 (or int32 for webgpu ints)
    ints = session.read(1, "y", as_int32=True)
    assert not marker.exists()
    assert got.dtype == np.float32 and got.tobytes() == payload
    assert ints.dtype == np.int32 and ints.tobytes() == payload


def test_rejects_malformed_replies(session) -> None:
    fake_browser(session, lambda req: ({"id": -1}, None))  # wrong id: overrides the echoed one
    with pytest.raises(RPCError, match="malformed"):
        session.run(1)


def test_survives_a_client_that_disconnects_mid_run(session) -> None:
    fake_browser(session, lambda req: None)  # hangs up on the first request
    with pytest.raises(RPCError, match="disconnected during run"):
        session.run(1)
    fake_browser(session, lambda req: ({"median_ms": 1.0, "mean_ms": 1.5, "times_ms": [1.0, 2.0]}, None))
    assert session.time(1, repeat=2)["median_ms"] == 1.0  # a new tab is served by the same server
