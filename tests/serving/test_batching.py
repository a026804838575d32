"""MicroBatcher: adaptive waiting scores a lone request at once and waits for announced ones."""

from __future__ import annotations

import asyncio

from mlsd.serving import MicroBatcher


def test_adaptive_batcher_waits_only_for_requests_that_have_arrived() -> None:
    sizes: list[int] = []

    async def main() -> None:
        batcher = MicroBatcher(
            lambda rows: [r * 10 for r in rows],
            max_batch_size=8,
            max_delay_ms=60_000,  # a wait this long would time the test out
            on_batch=sizes.append,
            adaptive=True,
        )
        await batcher.start()
        # nobody else announced: scored without waiting for company
        part = await asyncio.wait_for(batcher.submit([1]), timeout=10)
        assert part.result == [10]
        # one more request has arrived (its body is being read): the batch waits for it
        batcher.expect()
        first = asyncio.create_task(batcher.submit([2]))
        await asyncio.sleep(0.05)
        assert not first.done()
        batcher.unexpect()
        second = await asyncio.wait_for(batcher.submit([3]), timeout=10)
        assert (await first).batch_size == second.batch_size == 2
        await batcher.stop()

    asyncio.run(main())
    assert sizes == [1, 2]


def test_a_non_adaptive_batcher_waits_the_whole_delay_for_more_rows() -> None:
    async def main() -> list[int]:
        sizes: list[int] = []
        batcher = MicroBatcher(lambda rows: rows, max_batch_size=8, max_delay_ms=300, on_batch=sizes.append)
        await batcher.start()
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.05)  # well inside the delay: the second request joins the first
        await batcher.submit([2])
        await first
        await batcher.stop()
        return sizes

    assert asyncio.run(main()) == [2]


def test_a_failing_batch_is_rescored_request_by_request() -> None:
    """Only the request that breaks ``fn`` fails; the others in its batch get their results."""
    calls: list[list[int]] = []

    def fn(rows: list[int]) -> list[int]:
        calls.append(list(rows))
        if 13 in rows:
            raise ValueError("13 cannot be scored")
        return [r * 10 for r in rows]

    async def main() -> list[object]:
        batcher = MicroBatcher(fn, max_batch_size=8, max_delay_ms=300)
        await batcher.start()
        parts = await asyncio.gather(
            batcher.submit([1]), batcher.submit([13, 2]), batcher.submit([3]), return_exceptions=True
        )
        await batcher.stop()
        return [p if isinstance(p, BaseException) else p.result[p.start : p.stop] for p in parts]

    results = asyncio.run(main())
    assert results[0] == [10] and results[2] == [30]
    assert isinstance(results[1], ValueError)
    assert calls == [[1, 13, 2, 3], [1], [13, 2], [3]]
