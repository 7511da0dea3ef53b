"""Data: 2-D toy densities (offline, generated) and loaders."""
from tfresflow.data.toy import TOY_DENSITIES, dataset, sample, toy_names  # noqa: F401
