"""Test configuration: two logical CPU devices (for MirroredStrategy tests), quiet TF logs.

The logical devices must be configured before TensorFlow initialises its devices, so this
runs at import time, before any test module touches TensorFlow.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer trainings (deselect with -m 'not slow')")
