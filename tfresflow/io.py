"""Files in and out: atomic output (a reader never sees a partial file, a failure leaves no
debris) and the checks of paths given by a user, made before any expensive work.

* :func:`ensure_writable_dir`, :func:`check_output_file`: where results will be written;
* :func:`check_input_file`: a file to read, with the signature of its format (``.npy``,
  ``.keras``), so a wrong or truncated file is named as such instead of failing deep inside
  NumPy or Keras;
* :func:`atomic_path`, :func:`write_json`: the writes themselves.

Every check raises a ValueError naming the argument (``name``), what was expected and the path.
"""
import contextlib
import json
import os
import shutil
import tempfile
import zipfile

#: The first bytes of every NumPy ``.npy`` file (format version 1.0 and later).
NPY_MAGIC = b"\x93NUMPY"


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


def _probe_writable(folder):
    """True when a temporary folder can be made (and removed) in ``folder``: what
    :func:`atomic_path` needs; a real probe, as permission bits do not tell for read-only or
    virtual file systems."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tmp-probe-", dir=folder))
    except OSError:
        return False
    return True


def check_output_file(path, name="out"):
    """Checks that a file can be written (atomically) at ``path``; returns ``path``.

    The folder holding it must exist and be writable, and ``path`` must not be an existing
    directory (an existing file is replaced).

    Raises:
      ValueError: naming ``name`` and what is wrong with ``path``.
    """
    path = os.fspath(path)
    if not path or os.path.isdir(path):
        raise ValueError(f"`{name}`={path!r} is a directory; give a file name (e.g. "
                         f"{os.path.join(path or '.', 'samples.npy')!r}).")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"Cannot write `{name}`={path!r}: the folder {folder!r} does not "
                         "exist; create it first.")
    if not _probe_writable(folder):
        raise ValueError(f"Cannot write `{name}`={path!r}: the folder {folder!r} is not "
                         "writable.")
    return path


def _keras_archive_problem(path):
    if not zipfile.is_zipfile(path):
        return "not a zip archive (truncated, or not a .keras file)"
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as err:
        return f"an unreadable zip archive ({err})"
    if "config.json" not in names:
        return "a zip archive without the config.json of a .keras file"
    return None


def _npy_problem(path):
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
            return "not a NumPy .npy file (it does not start with the .npy signature)"
    return None


#: ``kind`` of :func:`check_input_file` -> (description, check returning a problem or None).
_INPUT_FORMATS = {"npy": ("a NumPy .npy array file", _npy_problem),
                  "keras": ("a Keras .keras model file", _keras_archive_problem)}


def check_input_file(path, name, kind=None):
    """Checks that ``path`` is an existing, readable file (of format ``kind``); returns it.

    ``kind``: ``"npy"`` (the ``.npy`` signature) or ``"keras"`` (a zip archive holding
    ``config.json``, as ``model.save("m.keras")`` writes), ``None`` for any file. The check
    reads the file's header or zip directory, not its content.

    Raises:
      ValueError: naming ``name`` when the file is missing, unreadable or not of ``kind``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"`{name}` file {path!r} does not exist.")
    if not os.path.isfile(path):
        raise ValueError(f"`{name}`={path!r} is not a file.")
    if kind is None:
        return path
    what, problem_of = _INPUT_FORMATS[kind]
    try:
        problem = problem_of(path)
    except OSError as err:
        problem = f"unreadable ({err.strerror})"
    if problem:
        raise ValueError(f"`{name}` must be {what}, but {path!r} is {problem}.")
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
