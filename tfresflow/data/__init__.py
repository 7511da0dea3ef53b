"""Data: 2-D toy densities (offline, generated), image loaders, dequantisation, splits."""
from tfresflow.data.toy import TOY_DENSITIES, dataset, sample, toy_names  # noqa: F401
from tfresflow.data.energies import (ENERGIES, energy, energy_names, log_density,  # noqa: F401
                                     log_normalizer)
from tfresflow.data.digits import load_digits  # noqa: F401
from tfresflow.data.split import (TEST_FRACTION, load_array, random_split,  # noqa: F401
                                  train_test_data)
from tfresflow.data.dequantization import bits_per_dim, dequantize  # noqa: F401
from tfresflow.data.images import IMAGE_DATASETS, image_batches, load_images  # noqa: F401
from tfresflow.data.images import labelled_image_batches, random_crop  # noqa: F401
from tfresflow.data.standardization import Standardization, channel_statistics  # noqa: F401
