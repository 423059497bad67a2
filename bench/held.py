"""Connections an attacker holds open: LDAP answers never read, HTTP requests never sent whole.

Both are kept at a fixed number: a connection the server drops is replaced
at the next check, as an attacker would. The LDAP request is the stall of
issue 17 (tests/stalls.py tests how slapd treats it; written with
app/directory/ber.py, because ldap3 always reads).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

from app.directory import ber

TCP_ESTABLISHED = 1  # linux/tcp_states.h; the first byte of struct tcp_info


def subschema_search(message_id: int) -> bytes:
    """An LDAPMessage: base-scope search of cn=subschema, (objectClass=*), attributes + and *."""
    return ber.message(message_id, ber.search_request(
        b"cn=subschema", 0, 0, 0, 0, False, ber.tlv(ber.PRESENT, b"objectClass"),
        ber.attribute_selection([b"+", b"*"])))


def ldap_stall(host: str, port: int, searches: int) -> socket.socket:
    """An anonymous LDAP connection that pipelines `searches` searches and never reads."""
    sock = socket.create_connection((host, port), timeout=5)
    sock.sendall(b"".join(subschema_search(i) for i in range(1, searches + 1)))
    return sock


def half_sent(host: str, port: int, source: str) -> socket.socket:
    """A login whose headers arrive and whose body never ends (a slow-POST)."""
    sock = socket.create_connection((host, port), timeout=5, source_address=(source, 0))
    sock.sendall(f"POST /auth/token HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                 '{"username": "'.encode())
    return sock


def still_open(sock: socket.socket) -> bool:
    """Our side still ESTABLISHED: the server has neither closed nor reset it
    (whatever it sent us is left unread)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_ESTABLISHED
    except OSError:
        return False


class Held:
    """`count` connections made by `open_one`, replaced when the server drops them."""

    def __init__(self, open_one: Callable[[], socket.socket], count: int) -> None:
        self.open_one = open_one
        self.count = count
        self.sockets: list[socket.socket] = []
        self.opened = 0
        self.dropped = 0
        self.refused = 0

    def check(self) -> None:
        """Count and replace the connections the server dropped since the last check."""
        alive = []
        for sock in self.sockets:
            if still_open(sock):
                alive.append(sock)
            else:
                self.dropped += 1
                sock.close()
        self.sockets = alive
        while len(self.sockets) < self.count:
            try:
                self.sockets.append(self.open_one())
            except OSError:
                self.refused += 1
                break
            self.opened += 1

    def close(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.sockets = []

    def summary(self) -> dict[str, int]:
        return {"held": self.count, "opened": self.opened, "dropped_by_server": self.dropped,
                "refused": self.refused}
