"""Atomic file output: a reader never sees a partial file, a failure leaves no debris."""
import contextlib
import json
import os
import shutil
import tempfile


def ensure_writable_dir(path, name="out"):
    """Creates ``path`` if needed and checks it is a writable directory.

    Raises:
      ValueError: naming ``name`` when the directory cannot be created or written.
    """
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ValueError(f"Cannot create output directory `{name}`={path!r}: {err.strerror}.") \
            from None
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"Output directory `{name}`={path!r} is not a writable directory.")
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    Works for files and directories (e.g. a SavedModel). On an exception the temporary is
    removed and an existing ``path`` is left untouched.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    tmp = os.path.join(tmp_dir, os.path.basename(path))
    try:
        yield tmp
        if os.path.isdir(path) and not os.path.islink(path) and os.path.isdir(tmp):
            old = path + ".old-" + os.path.basename(tmp_dir)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json(path, obj):
    """Writes ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
