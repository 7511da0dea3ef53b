"""Checkpoints of BoostedFlowTrainer: atomic writes, exact restore, resume."""
import os

import numpy as np
import pytest
import tensorflow as tf

import tfresflow as trf
from tfresflow.boosting import BoostedFlowTrainer
from tfresflow.models import boosted_coupling_components


def test_checkpoint_restores_and_resumes(tmp_path):
    x = trf.data.sample("moons", 1500, seed=0)

    def make():
        return BoostedFlowTrainer(boosted_coupling_components(2, 2, n_steps=1,
                                                              hidden_units=(16,)),
                                  batch_size=128, verbose=0)
    trainer = make()
    trainer.fit(x, steps_per_component=20, checkpoint_dir=str(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    restored = make().load_checkpoint(str(tmp_path / "stage_01"))
    x_eval = tf.constant(x[:100])
    np.testing.assert_allclose(restored.mixture().log_prob(x_eval).numpy(),
                               trainer.mixture().log_prob(tf.constant(x[:100])).numpy(),
                               rtol=1e-6)
    assert restored.history == trainer.history
    assert len(restored.fit(x, steps_per_component=20)) == 2  # nothing left to do
    resumed = make().load_checkpoint(str(tmp_path / "stage_00"))
    assert len(resumed.fit(x, steps_per_component=20)) == 2  # only stage 1 ran
    with pytest.raises(ValueError, match="not a boosted-flow checkpoint"):
        make().load_checkpoint(str(tmp_path))


def test_latest_checkpoint_is_the_highest_complete_stage(tmp_path):
    from tfresflow.boosting.checkpoint import STATE_FILE, latest_checkpoint

    assert latest_checkpoint(str(tmp_path / "missing")) is None
    assert latest_checkpoint(str(tmp_path)) is None
    for name, complete in [("stage_00", True), ("stage_02", True), ("stage_10", True),
                           ("stage_11", False), ("stage_xx", True)]:
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / STATE_FILE).write_text("{}")
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "stage_10")
