"""The engine's live jobs by id, with an index by user kept beside it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_MISSING: Any = object()


class JobTable(dict[str, T], Generic[T]):
    """A dict of job id → job that also knows each user's jobs (in insertion order), so
    "this user's jobs" costs O(their jobs), not O(every job). Only item assignment, `del`
    and `pop` change it; the dict methods that would bypass the index are refused."""

    def __init__(self, user_of: Callable[[T], str]) -> None:
        super().__init__()
        self._user_of = user_of
        # per user a list, not a dict: a few jobs each, and a dict costs ~4× the bytes
        self._by_user: dict[str, list[T]] = {}

    def __setitem__(self, job_id: str, job: T) -> None:
        if job_id in self:
            self._unindex(job_id, super().__getitem__(job_id))
        super().__setitem__(job_id, job)
        self._by_user.setdefault(self._user_of(job), []).append(job)

    def __delitem__(self, job_id: str) -> None:
        job = super().__getitem__(job_id)
        super().__delitem__(job_id)
        self._unindex(job_id, job)

    def pop(self, job_id: str, default: Any = _MISSING) -> Any:
        """Remove and return a job (or `default`, when given and the id is unknown)."""
        if job_id not in self:
            if default is _MISSING:
                raise KeyError(job_id)
            return default
        job = super().pop(job_id)
        self._unindex(job_id, job)
        return job

    def of(self, user: str) -> list[T]:
        """This user's jobs, in the order they were added."""
        mine = self._by_user.get(user)
        return list(mine) if mine else []

    def _unindex(self, job_id: str, job: T) -> None:
        user = self._user_of(job)
        mine = self._by_user.get(user)
        if mine is not None:
            for i, mine_job in enumerate(mine):
                if mine_job is job:
                    del mine[i]
                    break
            if not mine:
                del self._by_user[user]

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("JobTable changes only through [] =, del and pop")

    update = setdefault = popitem = clear = _refuse
