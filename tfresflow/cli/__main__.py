"""``python -m tfresflow.cli``: the ``tfresflow`` command."""
import sys

from tfresflow.cli import main

sys.exit(main())
