"""Result rows: which stored image each job produced, with its seed and infotext."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, select

from storage.models import Result, metadata, utcnow

if TYPE_CHECKING:
    from storage._conn import Connections

RESULTS = metadata.tables["results"]


def _rows(conn: Connection, stmt: Any) -> list[Result]:
    return [Result.model_validate(dict(row._mapping)) for row in conn.execute(stmt)]


def _add(conn: Connection, values: dict[str, Any]) -> int:
    return int(conn.execute(RESULTS.insert().returning(RESULTS.c.id), values).scalar_one())


def _delete(conn: Connection, ids: list[int]) -> int:
    return int(conn.execute(delete(RESULTS).where(RESULTS.c.id.in_(ids))).rowcount)


def _refs_in_use(conn: Connection, refs: list[str]) -> set[str]:
    stmt = select(RESULTS.c.image_ref).where(RESULTS.c.image_ref.in_(refs)).distinct()
    return {str(row[0]) for row in conn.execute(stmt)}


class ResultRepo:
    """Images produced by jobs; the bytes themselves live in the image store."""

    def __init__(self, db: Connections) -> None:
        self._db = db

    async def add(
        self,
        job_id: str,
        index: int,
        image_ref: str,
        seed: int,
        width: int,
        height: int,
        infotext: str = "",
    ) -> Result:
        """Record image number `index` of a job (a job's results normally come with
        JobRepo.render). Not repeat-safe: a lost COMMIT raises StorageUncertain."""
        result = Result(
            job_id=job_id,
            image_index=index,
            image_ref=image_ref,
            seed=seed,
            width=width,
            height=height,
            infotext=infotext,
            created_at=utcnow(),
        )
        values = result.model_dump(exclude={"id"})
        result.id = await self._db.write_tx(partial(_add, values=values))
        return result

    async def for_job(self, job_id: str) -> list[Result]:
        """A job's images in order."""
        stmt = select(RESULTS).where(RESULTS.c.job_id == job_id).order_by(RESULTS.c.image_index)
        return await self._db.read_tx(partial(_rows, stmt=stmt))

    async def older_than(self, before: datetime) -> list[Result]:
        """Results created before `before`, oldest first (for retention)."""
        stmt = select(RESULTS).where(RESULTS.c.created_at < before).order_by(RESULTS.c.created_at)
        return await self._db.read_tx(partial(_rows, stmt=stmt))

    async def delete(self, ids: Iterable[int]) -> int:
        """Delete result rows by id; returns how many went."""
        wanted = list(ids)
        if not wanted:
            return 0
        tx = partial(_delete, ids=wanted)
        return await self._db.write_tx(tx, again=tx)

    async def refs_in_use(self, refs: Iterable[str]) -> set[str]:
        """Which of `refs` some result still points at (keep those image files)."""
        wanted = list(set(refs))
        if not wanted:
            return set()
        return await self._db.read_tx(partial(_refs_in_use, refs=wanted))
