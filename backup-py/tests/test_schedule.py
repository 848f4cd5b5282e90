"""The scheduler with Python callables and backup jobs, on real time."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import backup_toolkit as bt

EVERY_SECOND = "* * * * * *"


def test_python_jobs_run_on_the_calling_thread_with_the_schedulers_rules(tmp_path: Path) -> None:
    calls: list[int] = []

    def job() -> str:
        calls.append(threading.get_ident())
        return f"call {len(calls)}"

    def failing() -> None:
        raise RuntimeError("the report server is down")

    events: list[bt.ScheduleEvent] = []
    scheduler = bt.Scheduler()
    scheduler.add_callable("report", EVERY_SECOND, job)
    scheduler.add_callable("broken", EVERY_SECOND, failing, stale_after_grace=timedelta(0))
    scheduler.run(duration=timedelta(seconds=3.5), on_event=events.append)
    scheduler.stop()

    assert len(calls) >= 2 and set(calls) == {threading.get_ident()}
    status = {s.name: s for s in scheduler.status()}
    assert status["report"].runs == len(calls) and status["report"].failures == 0
    assert status["report"].last_outcome == "succeeded"
    assert status["report"].last_message == f"call {len(calls)}"
    assert status["broken"].failures >= 2
    assert status["broken"].last_message is not None and "report server is down" in status["broken"].last_message
    kinds = {(e.kind, e.job) for e in events}
    assert ("run_succeeded", "report") in kinds
    assert ("run_failed", "broken") in kinds
    assert ("stale_alert", "broken") in kinds
    assert ("stale_alert", "report") not in kinds


def test_backup_jobs_back_up_and_apply_their_retention(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "f").write_text("x")
    repo = bt.Repository.init(str(tmp_path / "repo"), encryption=False)
    scheduler = bt.Scheduler()
    scheduler.add_backup("files", EVERY_SECOND, repo, [data], set="files", keep=bt.KeepPolicy(last=2))
    scheduler.start()
    scheduler.trigger("files")
    scheduler.run(duration=timedelta(seconds=3.5))
    scheduler.stop()
    status = scheduler.status()[0]
    assert status.runs >= 3 and status.failures == 0, status
    assert status.last_message is not None and "forgot" in status.last_message
    assert len(repo.list(set="files")) == 2
    assert repo.verify().ok
