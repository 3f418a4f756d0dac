"""Result rows: which stored image each job produced, with its seed and infotext."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete
from sqlmodel import select

from storage.models import Result, metadata

if TYPE_CHECKING:
    from storage._conn import Connections

RESULTS = metadata.tables["results"]


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
        """Record image number `index` of a job."""
        result = Result(
            job_id=job_id,
            image_index=index,
            image_ref=image_ref,
            seed=seed,
            width=width,
            height=height,
            infotext=infotext,
        )
        async with self._db.session() as session:
            session.add(result)
            await session.commit()
        return result

    async def add_many(self, results: Sequence[Result]) -> list[Result]:
        """Record several images (of one job, usually) in one transaction."""
        if results:
            async with self._db.session() as session:
                session.add_all(results)
                await session.commit()
        return list(results)

    async def for_job(self, job_id: str) -> list[Result]:
        """A job's images in order."""
        stmt = select(Result).where(RESULTS.c.job_id == job_id).order_by(RESULTS.c.image_index)
        async with self._db.session(readonly=True) as session:
            return list((await session.exec(stmt)).all())

    async def older_than(self, before: datetime) -> list[Result]:
        """Results created before `before`, oldest first (for retention)."""
        stmt = select(Result).where(RESULTS.c.created_at < before).order_by(RESULTS.c.created_at)
        async with self._db.session(readonly=True) as session:
            return list((await session.exec(stmt)).all())

    async def delete(self, ids: Iterable[int]) -> int:
        """Delete result rows by id; returns how many went."""
        wanted = list(ids)
        if not wanted:
            return 0
        async with self._db.write() as conn:
            result = await conn.execute(delete(RESULTS).where(RESULTS.c.id.in_(wanted)))
        return result.rowcount

    async def refs_in_use(self, refs: Iterable[str]) -> set[str]:
        """Which of `refs` some result still points at (keep those image files)."""
        wanted = list(set(refs))
        if not wanted:
            return set()
        stmt = select(RESULTS.c.image_ref).where(RESULTS.c.image_ref.in_(wanted)).distinct()
        async with self._db.read() as conn:
            return {str(row[0]) for row in await conn.execute(stmt)}
