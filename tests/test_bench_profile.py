"""bench/profile.py names each py-spy sample by its innermost known frame."""

from __future__ import annotations

from bench.profile import OTHER, categorise, shares

WORKER = ("Thread.run (threading.py:982);Bulkhead._work (app/bulkhead.py:153);"
          "People.find_pair (app/directory/people.py:127);"
          "Ldap.search (app/directory/operations.py:42);"
          "Connection.search (ldap3/core/connection.py:853)")
LOOP = ("Server.run (uvicorn/server.py:86);Runner.run (asyncio/runners.py:118);"
        "Litestar.__call__ (litestar/app.py:623);Edge.__call__ (app/api/edge.py:112)")


def test_the_innermost_known_frame_names_the_sample() -> None:
    assert categorise(WORKER + ";search_request (app/directory/ber.py:90)") == \
        "building the search request (BER)"
    assert categorise(WORKER + ";SyncStrategy.post_send_search (ldap3/strategy/sync.py:178);"
                      "decode_sequence (ldap3/utils/asn1.py:124)") == \
        "receiving and reading slapd's answer (ldap3, BER)"
    assert categorise(LOOP + ";Authenticator.verify (app/auth.py:200);"
                      "decode_complete (jwt/api_jws.py:250)") == "JWT verification"
    assert categorise(LOOP + ";encode (/usr/lib/python3/site-packages/msgspec/json.py:10)") == \
        "JSON (msgspec)"
    assert categorise(LOOP) == "userdir: edge, auth, service, directory"
    assert categorise("Litestar.__call__ (litestar/app.py:623)") == \
        "Litestar: routing, middleware, parameters"
    assert categorise("Condition.wait (threading.py:320)") == \
        "thread pools: hand-off and wake-ups"
    assert categorise("<module> (<frozen runpy>:88)") == OTHER


def test_raw_lines_are_counted_by_category() -> None:
    raw = "\n".join([f"{WORKER};search_request (app/directory/ber.py:90) 3",
                     f"{LOOP} 2", "garbage", ""])
    counted, total = shares(raw)
    assert total == 5
    assert counted == {"building the search request (BER)": 3,
                       "userdir: edge, auth, service, directory": 2}
