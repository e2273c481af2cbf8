"""Job rows (fm_jobs): claimed, renewed and finished only by the runner that holds them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, func, insert, or_, select, update

from flowmonkey_celery.core.jobs import Job, JobStatus
from flowmonkey_celery.stores.sql.schema import jobs

_JSON = {"input", "progress", "checkpoint", "result", "error"}
_UNFINISHED = (JobStatus.PENDING.value, JobStatus.RUNNING.value)


def job_row(job: Job) -> dict[str, Any]:
    row = job.model_dump(mode="python", exclude=_JSON)
    row.update(job.model_dump(mode="json", include=_JSON))
    row["status"] = job.status.value
    return row


def job_from_row(row: RowMapping) -> Job:
    return Job.model_validate(dict(row))


def insert_job(conn: Connection, job: Job) -> None:
    conn.execute(insert(jobs), job_row(job))


def get_job(conn: Connection, job_id: str, *, lock: bool = False) -> Job | None:
    query = select(jobs).where(jobs.c.id == job_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return job_from_row(row) if row else None


def list_jobs(conn: Connection, execution_id: str) -> list[Job]:
    query = (
        select(jobs)
        .where(jobs.c.execution_id == execution_id)
        .order_by(jobs.c.created_at, jobs.c.id)
    )
    return [job_from_row(r) for r in conn.execute(query).mappings()]


def claim_job(
    conn: Connection, job_id: str, runner_id: str, now: datetime, lease_until: datetime
) -> bool:
    # One conditional UPDATE: of two runners claiming at once, one matches the row.
    claimable = or_(
        jobs.c.status == JobStatus.PENDING.value,
        and_(jobs.c.status == JobStatus.RUNNING.value, jobs.c.lease_expires_at < now),
    )
    statement = (
        update(jobs)
        .where(jobs.c.id == job_id, claimable)
        .values(
            status=JobStatus.RUNNING.value,
            runner_id=runner_id,
            claims=jobs.c.claims + 1,
            lease_expires_at=lease_until,
            heartbeat_at=now,
            # The first claim's start: a job's duration (and the maximum step duration) spans
            # every runner it took, not just the last.
            started_at=func.coalesce(jobs.c.started_at, now),
            updated_at=now,
        )
    )
    return bool(conn.execute(statement).rowcount == 1)


def touch_job(
    conn: Connection,
    job_id: str,
    runner_id: str,
    now: datetime,
    lease_until: datetime,
    fields: dict[str, Any],
) -> bool:
    statement = (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.runner_id == runner_id,
            jobs.c.status == JobStatus.RUNNING.value,
        )
        .values(lease_expires_at=lease_until, heartbeat_at=now, updated_at=now, **fields)
    )
    return bool(conn.execute(statement).rowcount == 1)


def finish_job(
    conn: Connection,
    job_id: str,
    runner_id: str,
    status: JobStatus,
    result: Any,
    error: dict[str, Any] | None,
    now: datetime,
) -> bool:
    statement = (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.runner_id == runner_id,
            jobs.c.status == JobStatus.RUNNING.value,
        )
        .values(
            status=status.value,
            result=result,
            error=error,
            lease_expires_at=None,
            updated_at=now,
        )
    )
    return bool(conn.execute(statement).rowcount == 1)


def cancel_jobs(conn: Connection, execution_id: str, now: datetime) -> int:
    statement = (
        update(jobs)
        .where(jobs.c.execution_id == execution_id, jobs.c.status.in_(_UNFINISHED))
        .values(
            status=JobStatus.CANCELLED.value, runner_id=None, lease_expires_at=None, updated_at=now
        )
    )
    return int(conn.execute(statement).rowcount)


def jobs_to_reap(
    conn: Connection, now: datetime, started_before: datetime | None, limit: int
) -> list[Job]:
    due = and_(jobs.c.status.in_(_UNFINISHED), jobs.c.lease_expires_at < now)
    if started_before is not None:
        overdue = and_(jobs.c.status == JobStatus.RUNNING.value, jobs.c.started_at < started_before)
        due = or_(due, overdue)
    query = select(jobs).where(due).order_by(jobs.c.lease_expires_at).limit(limit)
    return [job_from_row(r) for r in conn.execute(query).mappings()]


def defer_job(conn: Connection, job_id: str, now: datetime, until: datetime) -> bool:
    statement = (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            jobs.c.status.in_(_UNFINISHED),
            jobs.c.lease_expires_at < now,
        )
        .values(
            status=JobStatus.PENDING.value, runner_id=None, lease_expires_at=until, updated_at=now
        )
    )
    return bool(conn.execute(statement).rowcount == 1)
