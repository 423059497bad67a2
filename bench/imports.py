"""`python -m bench.imports [N [offline|online]]`: time importing N users with hashed passwords.

Online (slapd running, bound as the importer identity) and --offline (slapadd
into the stopped embedded directory), each into a fresh embedded directory.
Targets (issue #21, for 100k users on 2 cores): online <= 600 s, offline <= 120 s.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tempfile
import time
from pathlib import Path

from app import embedded
from app.config import Config, load_config
from app.migration import importer
from app.migration.importer import Options
from bench.seed import BASE_DN

PASSWORD = "Bench-Import-1"  # noqa: S105 - the generated users' known password
TARGETS = {"online": 600.0, "offline": 120.0}


def ssha(password: str, salt: bytes) -> str:
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - {SSHA}, as imported
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def source(path: Path, count: int) -> Path:
    """Users as a FitTrackee-like CSV: an id each, every 50th one staff."""
    with path.open("w") as f:
        f.write("username,email,first_name,last_name,id,account_type,password_hash\n")
        for i in range(count):
            kind = "staff" if i % 50 == 0 else "user"
            f.write(f"imp{i:06d},imp{i:06d}@example.org,Imported,User{i},{20000 + i},{kind},"
                    f"{ssha(PASSWORD, i.to_bytes(8, 'big'))}\n")
    return path


def config_for(data_dir: Path, port: int) -> Config:
    return load_config(None, {"USERDIR_EMBEDDED__DATA_DIR": str(data_dir),
                              "USERDIR_EMBEDDED__PORT": str(port),
                              "USERDIR_LDAP__BASE_DN": BASE_DN})


def timed(config: Config, path: Path, offline: bool) -> tuple[float, str]:
    out = io.StringIO()
    started = time.monotonic()
    status = importer.run(config, Options(path, "csv", offline=offline), out)
    elapsed = time.monotonic() - started
    if status != 0:
        raise RuntimeError(f"import failed ({status}): {out.getvalue()}")
    return elapsed, out.getvalue().strip()


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 100_000
    modes = argv[1:] or ["offline", "online"]
    with tempfile.TemporaryDirectory(prefix="bench-import-") as scratch:
        root = Path(scratch)
        path = source(root / "users.csv", count)
        results = {}
        for mode in modes:
            data_dir = root / mode
            embedded.initialise(data_dir, BASE_DN, ["user", "staff", "admin"])
            config = config_for(data_dir, 3390)
            if mode == "offline":
                results[mode] = timed(config, path, offline=True)
                continue
            slapd = embedded.Slapd(data_dir, 3390)
            slapd.start()
            try:
                results[mode] = timed(config, path, offline=False)
            finally:
                slapd.stop()
    for mode, (elapsed, said) in results.items():
        verdict = "met" if elapsed <= TARGETS[mode] * count / 100_000 else "MISSED"
        print(f"{mode}: {count} users in {elapsed:.1f} s ({count / elapsed:.0f}/s); target "
              f"{TARGETS[mode] * count / 100_000:.0f} s: {verdict}; {said}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
