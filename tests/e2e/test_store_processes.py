"""The store under real processes: a writer killed with SIGKILL at random points never leaves
a torn file, and concurrent `credproxy auth login` processes lose no entry."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from credproxy.credentials.store import Store, StoreEntry, dumps

pytestmark = pytest.mark.e2e

CREDPROXY = str(Path(sys.executable).parent / "credproxy")
TIMEOUT = 60
BIG = 400  # entries: makes each write long enough (~100 KB) to be killed in the middle

WRITER = textwrap.dedent(
    """
    import sys
    from credproxy.credentials.store import Store, StoreEntry, dumps

    store = Store(sys.argv[1])
    big = [StoreEntry.basic(f"https://h{i}.example/", f"user{i}", "x" * 200) for i in range(int(sys.argv[2]))]
    generation = 0
    while True:
        generation += 1
        marker = StoreEntry.basic("https://marker.example/", "marker", f"gen{generation}")
        store.modify(lambda old: [marker] + big)
        print(f"wrote {generation}", flush=True)
    """
)


def test_killed_writer_leaves_old_or_new_file(tmp_path):
    path = tmp_path / "store" / "credentials.toml"
    store = Store(path)
    rng = random.Random(1234)
    generations = set()
    for _round in range(15):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(BIG)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # kill after a whole number of writes chosen at random (so the rounds see several
        # generations however slow the machine), then at a random point of the next one
        target = rng.randint(1, 4)
        try:
            for generation in range(1, target + 1):
                assert proc.stdout.readline() == f"wrote {generation}\n", proc.stderr.read()
            time.sleep(rng.uniform(0, 0.05))
        finally:
            proc.kill()  # SIGKILL, possibly in the middle of a write
            proc.wait(timeout=TIMEOUT)
            proc.stdout.close()
            proc.stderr.close()
        entries = store.read()  # parses: never a torn file
        assert len(entries) == BIG + 1
        assert entries[0].username == "marker"
        assert entries[1:] == [StoreEntry.basic(f"https://h{i}.example/", f"user{i}", "x" * 200) for i in range(BIG)]
        generations.add(entries[0].password)
    assert len(generations) > 1, "every round saw the same write; the test proves nothing"
    # the next write cleans up temp files of killed writers
    store.add(StoreEntry.basic("https://final.example/", "final", "pw"))
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert len(store.read()) == BIG + 2


RAW_WRITER = textwrap.dedent(
    """
    import sys
    from credproxy.credentials.store import Store

    store = Store(sys.argv[1])
    store._ensure_dir()
    texts = [open(sys.argv[2]).read(), open(sys.argv[3]).read()]
    n = 0
    while True:
        # the write step alone (no parse), so that the kill lands in it most of the time
        with store._exclusive_lock():
            store._write_atomic(texts[n % 2])
        n += 1
        if n == 1:
            print("wrote", flush=True)
    """
)


def test_killed_during_large_writes_file_is_whole(tmp_path):
    """Writes of a ~4 MB store, killed at random: the file is byte for byte one of the two
    versions (a writer that truncates in place fails this within a few rounds)."""
    path = tmp_path / "store" / "credentials.toml"
    big = [StoreEntry.basic(f"https://h{i}.example/", f"user{i}", "z" * 150) for i in range(20000)]
    versions = []
    for tag in ("a", "b"):
        text = dumps([StoreEntry.basic("https://marker.example/", "marker", tag)] + big)
        (tmp_path / tag).write_text(text)
        versions.append(text.encode())
    rng = random.Random(99)
    seen = set()
    for _round in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", RAW_WRITER, str(path), str(tmp_path / "a"), str(tmp_path / "b")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline() == "wrote\n", proc.stderr.read()
            time.sleep(rng.uniform(0, 0.1))
        finally:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
            proc.stdout.close()
            proc.stderr.close()
        content = path.read_bytes()
        assert content in versions, f"torn file: {len(content)} bytes"
        seen.add(versions.index(content))
    assert seen == {0, 1}
    assert len(Store(path).read()) == len(big) + 1


def test_concurrent_logins_lose_no_entry(tmp_path):
    data = tmp_path / "data"
    store = Store(data / "credentials.toml")
    # a big existing store makes every read-modify-write take a while, so they overlap
    store.modify(lambda _old: [StoreEntry.basic(f"https://h{i}.example/", f"user{i}", "y" * 100) for i in range(BIG)])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "CREDPROXY_CREDENTIALS_DIR": str(data)}
    procs = [
        subprocess.Popen(
            [CREDPROXY, "auth", "login", f"https://svc{n}.example/simple/", "--username", f"login{n}", "--password", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for n in range(10)
    ]
    try:
        # release all ten at once: each waits for its password on stdin
        for n, proc in enumerate(procs):
            proc.stdin.write(f"secret-{n}\n".encode())
            proc.stdin.flush()
        results = [proc.communicate(timeout=TIMEOUT) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=TIMEOUT)
    for n, (proc, (out, err)) in enumerate(zip(procs, results)):
        assert proc.returncode == 0, err
        assert err.decode() == f"Stored credentials for login{n}@https://svc{n}.example/\n"
        assert f"secret-{n}".encode() not in out + err
    entries = {(e.service, e.username): e.password for e in store.read()}
    assert len(entries) == BIG + 10
    for n in range(10):
        assert entries[(f"https://svc{n}.example/", f"login{n}")] == f"secret-{n}"
