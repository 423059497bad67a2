"""LDAP clients that send and never read (the stall of issue 17), and how slapd treats them.

An LDAP client may pipeline requests without reading the answers. slapd 2.5
lets one connection run up to half its threads at once, so a few such
connections asking for big answers (the subschema: 110 KB each) used to hold
every slapd thread in write(), and nobody, the API and PAM included, got an
answer. The requests are written with app/directory/ber.py: ldap3 always reads.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable

from app.directory import ber

SCHEMA = "cn=subschema"
ESTABLISHED = "01"  # /proc/net/tcp's state column


def search_request(message_id: int, base: str = SCHEMA,
                   attributes: tuple[str, ...] = ("+", "*")) -> bytes:
    """An LDAPMessage with a base-scope SearchRequest, filter (objectClass=*)."""
    return ber.message(message_id, ber.search_request(
        base.encode(), 0, 0, 0, 0, False, ber.tlv(ber.PRESENT, b"objectClass"),
        ber.attribute_selection([a.encode() for a in attributes])))


def bind_request(message_id: int, dn: str, password: str) -> bytes:
    """An LDAPMessage with a simple BindRequest (LDAPv3)."""
    return ber.message(message_id, ber.tlv(ber.BIND_REQUEST, ber.integer(3) + ber.tlv(
        ber.OCTET_STRING, dn.encode()) + ber.tlv(ber.SIMPLE, password.encode())))


def _bound(sock: socket.socket, bind: tuple[str, str] | None) -> socket.socket:
    """The socket, bound as (dn, password) first if given (the answer is read:
    only what follows is left unread)."""
    if bind is not None:
        sock.sendall(bind_request(1, *bind))
        answer = sock.recv(4096)
        # A BindResponse (0x61) whose resultCode (ENUMERATED 0x0a 0x01) is success.
        assert b"\x61" in answer and b"\x0a\x01\x00" in answer, f"bind refused: {answer!r}"
    return sock


def stall(host: str, port: int, n_connections: int, n_searches: int,
          bind: tuple[str, str] | None = None, timeout: float = 5.0) -> list[socket.socket]:
    """Open n_connections connections (anonymous, or bound as `bind`), each
    sending n_searches pipelined subschema searches, and never read an
    answer. Returns the sockets, open; the caller closes them (close_all)."""
    payload = b"".join(search_request(i) for i in range(2, n_searches + 2))
    sockets: list[socket.socket] = []
    try:
        for _ in range(n_connections):
            sockets.append(_bound(socket.create_connection((host, port), timeout=timeout),
                                  bind))
        for sock in sockets:
            sock.sendall(payload)  # ~40 bytes a request: fits any send buffer
    except BaseException:
        close_all(sockets)
        raise
    return sockets


def stall_trickle(host: str, port: int, n_connections: int, prefill: int = 36,
                  burst: int = 13, gap: float = 0.01, bind: tuple[str, str] | None = None,
                  timeout: float = 5.0) -> list[socket.socket]:
    """The same, without ever queueing many requests in slapd (so that a
    limit on pending requests does not catch it): `prefill` searches one at
    a time, `gap` seconds apart, fill the TCP buffers; then `burst` at once,
    all handed to slapd's threads before any of them finds the buffer full."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(n_connections):
            sockets.append(_bound(socket.create_connection((host, port), timeout=timeout),
                                  bind))
        for i in range(2, prefill + 2):
            for sock in sockets:
                sock.sendall(search_request(i))
            time.sleep(gap)
        payload = b"".join(search_request(prefill + 2 + i) for i in range(burst))
        for sock in sockets:
            sock.sendall(payload)
    except OSError:
        # slapd dropped a connection while it was being filled: what the
        # caller checks for anyway (held_by_server).
        return sockets
    except BaseException:
        close_all(sockets)
        raise
    return sockets


def close_all(sockets: Iterable[socket.socket]) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()


def held_by_server(port: int, sockets: Iterable[socket.socket]) -> int:
    """How many of these connections the server on `port` still holds open
    (its side ESTABLISHED), read from /proc/net/tcp: a server that dropped a
    connection may still have answers in flight, so reading the client side
    cannot tell."""
    ours = set()
    for sock in sockets:
        with contextlib.suppress(OSError):
            ours.add(sock.getsockname()[1])
    held = 0
    with open("/proc/net/tcp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) in ours \
                    and state == ESTABLISHED:
                held += 1
    return held
