"""Request ids drawn from the pooled randomness of `mlsd.serving.ids` stay unique and ordered."""

from __future__ import annotations

import os

from mlsd.serving import ids


def test_ids_stay_unique_across_pool_refills() -> None:
    # 20 bytes of randomness per id: 3 x 5,000 ids need more than the 64 KiB of one draw
    drawn = [ids.new_request_ids(5000) for _ in range(3)] + [ids.new_request_ids(1) for _ in range(2000)]
    flat = [i for batch in drawn for i in batch]
    assert len(set(flat)) == len(flat)
    assert all(batch == sorted(batch) for batch in drawn)
    # the random part of consecutive ids differs: no byte is handed out twice
    assert len({i[12:] for i in flat}) == len(flat)


def test_a_forked_child_does_not_reuse_the_parents_bytes() -> None:
    ids.new_request_ids(1)  # the pool holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.close(read)
        os.write(write, ids.new_request_ids(1)[0].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child[12:] != ids.new_request_ids(1)[0][12:]
