"""Command line: ``tfresflow train | evaluate | sample | match``.

``tfresflow train`` is the main job: data -> flow -> Keras ``fit`` -> evaluation -> figures ->
saved model (:mod:`tfresflow.cli.train`; ``--model boosted`` and ``match`` are in
:mod:`tfresflow.cli.boosted`). Everything a command writes goes to ``--out`` atomically.

Arguments are parsed before TensorFlow is imported: the command modules import it only when a
command runs, so ``tfresflow --help``, ``--version`` and every argument error answer at once.
While a command runs, TensorFlow's start-up banner and log messages are hidden
(:mod:`tfresflow.cli.quiet`); ``--verbose`` shows them.
"""
import argparse
import sys

from tfresflow import __version__
from tfresflow.cli import boosted, quiet, train


def build_parser():
    """The ``tfresflow`` argument parser; each sub-command stores its function as ``run``."""
    parser = argparse.ArgumentParser(prog="tfresflow", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_commands(sub)
    boosted.add_match_command(sub)
    for command in sub.choices.values():
        command.add_argument("--verbose", action="store_true",
                             help="show TensorFlow's start-up banner and log messages "
                                  "(hidden by default)")
    return parser


def main(argv=None):
    """Runs ``tfresflow`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    Exit codes: 0 success; 2 bad input (a ValueError of the command: it prints
    ``tfresflow COMMAND: error: ...`` to stderr); 3 numerical failure (a FloatingPointError:
    training diverged - a non-finite loss - or the fitted model gives non-finite densities).
    """
    args = build_parser().parse_args(argv)
    try:
        with quiet.tensorflow_logs(verbose=args.verbose):
            import tfresflow.models  # noqa: F401  (registers every Keras class for loading)
            args.run(args)
    except FloatingPointError as err:
        print(f"tfresflow {args.command}: error: {err}", file=sys.stderr)
        return 3
    except ValueError as err:
        print(f"tfresflow {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
