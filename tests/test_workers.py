"""The worker split: every item lands on exactly one worker, read from flags or launchers."""

import pytest

from interp.workers import WorkerSplit, WorkerSplitError, barrier, worker_split


@pytest.mark.parametrize("world_size", [1, 2, 3, 7])
def test_items_cover_every_item_once(world_size):
    n = 20
    seen = sorted(i for k in range(world_size) for i in WorkerSplit(k, world_size).items(n))
    assert seen == list(range(n))


def test_mine_takes_every_world_size_th_item():
    assert WorkerSplit(1, 3).mine("abcdefg") == ["b", "e"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, (0, 1)),
        ({"RANK": "1", "WORLD_SIZE": "4"}, (1, 4)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "3",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_COUNT": "5",
            },
            (2, 5),
        ),
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "3"}, (2, 3)),
        # torchrun wins over an enclosing SLURM allocation
        ({"RANK": "0", "WORLD_SIZE": "2", "SLURM_PROCID": "5", "SLURM_NTASKS": "8"}, (0, 2)),
    ],
)
def test_split_from_launcher_variables(env, expected):
    split = worker_split(env=env)
    assert (split.rank, split.world_size) == expected


def test_flags_win_over_the_environment():
    assert worker_split(1, 2, env={"RANK": "0", "WORLD_SIZE": "8"}).source == "flags"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(rank=2, world_size=2), "rank must be in 0..world_size-1"),
        (dict(rank=1), "give both --rank and --world-size"),
        (dict(env={"RANK": "x", "WORLD_SIZE": "2"}), r"\$RANK='x' is not an integer"),
    ],
)
def test_bad_splits_are_refused(kwargs, message):
    with pytest.raises(WorkerSplitError, match=message):
        worker_split(**kwargs)


def test_barrier_alone_returns_at_once():
    barrier(WorkerSplit())
    barrier(WorkerSplit(0, 2))  # not under torchrun: nothing to wait for
