"""Nightly backups of an etcd cluster and a Redis server into S3, from
Python: the scheduler runs both jobs on cron expressions, keeps a week of
daily backups, and reports each run; a Python job checks the newest backup
every hour.

    python3 examples/python/nightly_stores.py s3://backups/cluster-a \\
        --etcd https://10.0.0.1:2379 --redis redis://10.0.0.2:6379

Credentials come from the environment as for backupctl: AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, BACKUP_PASSWORD_FILE (or BACKUP_PASSWORD), and
BACKUP_ENDPOINT for an S3-compatible server.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import backup_toolkit as bt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", help="repository location (a path, s3://, az://, gs://, sftp://)")
    parser.add_argument("--etcd", action="append", default=[], help="etcd endpoint (repeatable)")
    parser.add_argument("--etcd-ca", help="CA certificate of the etcd cluster")
    parser.add_argument("--redis", help="Redis URL")
    parser.add_argument("--redis-replication", action="store_true",
                        help="read the RDB over the replication protocol (the server's disk is elsewhere)")
    args = parser.parse_args()

    try:
        repo = bt.Repository.open(args.repository)
    except bt.NotFoundError:
        repo = bt.Repository.init(args.repository)
    keep = bt.KeepPolicy(daily=7, weekly=4)

    scheduler = bt.Scheduler()
    if args.etcd:
        scheduler.add_backup("etcd", "0 2 * * *", repo, source=bt.EtcdSource(args.etcd, ca=args.etcd_ca),
                             set="etcd", keep=keep, jitter=timedelta(minutes=5))
    if args.redis:
        scheduler.add_backup("redis", "30 2 * * *", repo,
                             source=bt.RedisSource(args.redis, replication=args.redis_replication),
                             set="redis", keep=keep, prune=True)

    def check_freshness() -> str:
        newest = {b.set: b for b in repo.list()}
        ages = {name: datetime.now(timezone.utc) - backup.time for name, backup in newest.items()}
        stale = [name for name, age in ages.items() if age > timedelta(days=1, hours=2)]
        if stale:
            raise RuntimeError(f"no backup for more than a day: {', '.join(stale)}")
        return ", ".join(f"{name} {age}" for name, age in ages.items())

    scheduler.add_callable("freshness", "0 * * * *", check_freshness)

    def report(event: bt.ScheduleEvent) -> None:
        if event.kind in ("run_succeeded", "run_failed", "stale_alert", "collision"):
            print(f"{event.time or ''} {event.job}: {event.kind} {event.message or ''}", flush=True)

    try:
        scheduler.run(on_event=report)
    except KeyboardInterrupt:
        scheduler.stop()


if __name__ == "__main__":
    main()
