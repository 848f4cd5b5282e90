"""Several backups at once from threads and from asyncio; an awaitable
cancelled; Ctrl-C during a long synchronous backup; a forked child."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import backup_toolkit as bt
from conftest import SLOW_SOURCE, make_tree


def test_backups_from_several_threads_at_once(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), password="pw")
    roots = []
    for n in range(4):
        root = tmp_path / f"src{n}"
        root.mkdir()
        make_tree(root)
        roots.append(root)
    results: dict[int, bt.BackupSummary] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            results[n] = repo.backup([roots[n]], set=f"set-{n}")
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(b.set for b in repo.list()) == [f"set-{n}" for n in range(4)]
    for n in range(4):
        assert repo.read_file(results[n].backup, f"src{n}/notes.txt") == b"remember the milk\n"
    assert repo.verify(read_data=True).ok


def test_backups_from_asyncio_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        repo = await bt.Repository.init_async(str(tmp_path / "repo"), encryption=False)
        roots = []
        for n in range(3):
            root = tmp_path / f"a{n}"
            root.mkdir()
            make_tree(root)
            roots.append(root)
        events: list[bt.Progress] = []
        loop_thread = threading.get_ident()
        seen_threads: set[int] = set()

        def on_progress(event: bt.Progress) -> None:
            seen_threads.add(threading.get_ident())
            events.append(event)

        summaries = await asyncio.gather(
            *(repo.backup_async([root], set=f"s{n}", on_progress=on_progress) for n, root in enumerate(roots))
        )
        assert {s.backup.set for s in summaries} == {"s0", "s1", "s2"}
        assert len(await repo.list_async()) == 3
        backup = await repo.find_async("latest", set="s1")
        assert await repo.read_file_async(backup, "a1/notes.txt") == b"remember the milk\n"
        assert [e.path for e in await repo.ls_async(backup)][0] == "a1"
        reader = await repo.open_file_async(backup, "a1/deep/repeated.txt")
        chunks = [chunk async for chunk in reader]
        assert b"".join(chunks) == b"the same line\n" * 10_000
        restored = await repo.restore_async(backup, tmp_path / "out")
        assert restored.files == 4
        assert (await repo.verify_async(read_data=True)).ok
        decisions = await repo.forget_async(bt.KeepPolicy(last=1), set="s0", dry_run=True)
        assert [d.keep for d in decisions] == [True]
        assert (await repo.prune_async(dry_run=True)).packs_deleted == 0
        await asyncio.sleep(0.1)  # the last progress callbacks are scheduled on the loop
        assert seen_threads == {loop_thread}
        assert sum(1 for e in events if e.phase == "completed") >= 3
        reopened = await bt.Repository.open_async(str(tmp_path / "repo"))
        assert reopened.id == repo.id

    asyncio.run(main())




def test_cancelling_an_awaitable_leaves_the_repository_valid(tmp_path: Path) -> None:
    async def main() -> None:
        repo = await bt.Repository.init_async(str(tmp_path / "repo"), encryption=False)
        task = asyncio.ensure_future(repo.backup_async(source=bt.CommandSource(SLOW_SOURCE), set="slow"))
        await asyncio.sleep(1.0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await repo.list_async() == []
        assert (await repo.verify_async(read_data=True)).ok

    asyncio.run(main())


def test_ctrl_c_interrupts_a_long_backup_within_two_seconds(tmp_path: Path) -> None:
    repo_dir = tmp_path / "repo"
    bt.Repository.init(str(repo_dir), encryption=False)
    script = textwrap.dedent(
        f"""
        import sys, time
        import backup_toolkit as bt
        repo = bt.Repository.open({str(repo_dir)!r})
        started = [False]
        def on_progress(event):
            if not started[0]:
                started[0] = True
                print("started", flush=True)
        try:
            repo.backup(source=bt.CommandSource({SLOW_SOURCE!r}), set="slow", on_progress=on_progress)
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", time.monotonic(), flush=True)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    time.sleep(1.5)  # the backup is well under way (it lasts six seconds)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    line = child.stdout.readline().split()
    child.wait(timeout=30)
    assert line and line[0] == "interrupted", line
    assert float(line[1]) - sent < 2.0
    repo = bt.Repository.open(str(repo_dir))
    assert repo.list() == []
    report = repo.verify(read_data=True)
    assert report.ok, report.errors


def test_a_forked_child_gets_a_clear_error(tmp_path: Path) -> None:
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    assert repo.list() == []
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            repo.list()
            message = b"no error"
        except bt.BackupError as error:
            message = str(error).encode()
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            message = repr(error).encode()
        os.write(write, message)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    assert "forked" in said, said
