"""errors: the messages users see (out-of-memory advice)."""

import pytest

from metaanchor.errors import out_of_memory_message


@pytest.mark.parametrize("batch, option, expected", [
    (8, "solver.batch_size=", "CUDA out of memory at iteration 3 with batch size 8; try solver.batch_size=4"),
    (5, "--batch-size", "CUDA out of memory at iteration 3 with batch size 5; try --batch-size 2"),
    (1, "--batch-size", "batch size is already 1: use a smaller input size"),
])
def test_out_of_memory_message_names_the_batch_size_to_try(batch, option, expected):
    assert expected in out_of_memory_message("at iteration 3", batch, option)
