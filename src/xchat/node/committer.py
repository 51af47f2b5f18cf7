"""The store thread, and group commit: many writes, one transaction, one fsync.

The node's SQLCipher store is thread-confined: every call runs on one worker thread
(:meth:`Committer.run`). Writes go through :meth:`Committer.commit`, which queues a
function of the store; a background task takes what is queued (up to
:data:`COMMIT_BATCH` functions) and runs them in one transaction, so a burst of messages
costs one fsync. Each caller's future resolves with its function's result once the
transaction committed (a message is durable before it is published). A function that
raises is retried alone, in a transaction of its own, so that one bad write cannot undo
the others of its batch; its future gets the exception.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from xchat.aio import reap
from xchat.store.node import NodeStore

__all__ = ["COMMIT_BATCH", "Committer"]

log = logging.getLogger("xchat.node")

T = TypeVar("T")

#: Writes committed in one transaction at most.
COMMIT_BATCH: Final = 1000


@dataclass
class _Job:
    """Writes to commit together, and who waits for them."""

    apply: Callable[[NodeStore], Any]
    future: asyncio.Future[Any]


class Committer:
    """Owns the store's thread; see the module docstring."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xchat-store")
        self._jobs: list[_Job] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the store thread (reads, and writes outside group commit)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run a store call on the store thread from synchronous code."""
        return self._executor.submit(fn, *args)

    def commit(self, apply: Callable[[NodeStore], T]) -> asyncio.Future[T]:
        """Queue writes for the next transaction; the future resolves once committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(apply, future))
        self._ready.set()
        return future

    def start(self) -> None:
        self._task = asyncio.create_task(self._committer(), name="node-commit")

    async def close(self) -> None:
        """Commit what is still queued, close the store, end the thread."""
        if self._task is not None:
            await reap(self._task)
            self._task = None
        while self._jobs:
            jobs = self._take()
            self._settle(jobs, await self._results(jobs))
        await self.run(self.store.close)
        self._executor.shutdown(wait=True)

    def _take(self) -> list[_Job]:
        jobs, self._jobs = self._jobs[:COMMIT_BATCH], self._jobs[COMMIT_BATCH:]
        if not self._jobs:
            self._ready.clear()
        return jobs

    def _run_jobs(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        """On the store thread: every job in one transaction; a failing job is retried
        alone so that one bad write cannot undo the others."""
        results: list[tuple[bool, Any]] = []
        try:
            with self.store.transaction():
                for job in jobs:
                    results.append((True, job.apply(self.store)))
            return results
        except Exception:
            if len(jobs) == 1:
                raise
        results = []
        for job in jobs:
            try:
                with self.store.transaction():
                    results.append((True, job.apply(self.store)))
            except Exception as exc:
                results.append((False, exc))
        return results

    async def _results(self, jobs: list[_Job]) -> list[tuple[bool, Any]]:
        try:
            return await self.run(self._run_jobs, jobs)
        except Exception as exc:
            log.error("a store write failed: %s", type(exc).__name__)
            return [(False, exc)] * len(jobs)

    @staticmethod
    def _settle(jobs: list[_Job], results: list[tuple[bool, Any]]) -> None:
        for job, (ok, value) in zip(jobs, results, strict=True):
            if job.future.done():
                continue
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    async def _committer(self) -> None:
        while True:
            await self._ready.wait()
            jobs = self._take()
            if jobs:
                self._settle(jobs, await self._results(jobs))
