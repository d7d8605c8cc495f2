import pytest
import torch

from metaanchor.data.synth import synth_config, write_synth_dataset

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synth_dirs(tmp_path_factory):
    """A small synthetic train/val pair on disk (COCO layout), shared by the session."""
    root = tmp_path_factory.mktemp("synth")
    train = write_synth_dataset(root / "train", 48, synth_config("default", seed=0), progress=False)
    val = write_synth_dataset(root / "val", 16, synth_config("default", seed=1), progress=False)
    return train, val
