"""Writing a file atomically (a temporary file in the same directory, then a rename over the target), and the one
rule every command's output path follows: an existing, writable directory, no directories made, checked first."""

import contextlib
import os
import tempfile


def check_writable(path):
    """Raise an OSError naming `path` unless a file can be written there: its directory exists (none is made) and
    takes new files, and `path` is not a directory. Returns the directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path!r}: it is a directory; expected a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        existing = directory
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise NotADirectoryError(f"cannot write {path!r}: {existing!r} is a file, not a directory")
        raise FileNotFoundError(f"cannot write {path!r}: the directory {directory!r} does not exist")
    try:
        handle, probe = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as error:
        raise type(error)(f"cannot write {path!r}: the directory {directory!r} refuses new files "
                          f"({error.strerror or error})") from None
    os.close(handle)
    os.unlink(probe)
    return directory


def write_atomically(path, write):
    """`write(file)` into a temporary file next to `path`, then rename it to `path`: readers never see half a file,
    and on any error the old file stays. The new file gets the mode a plainly created file would (umask applied).
    An error names `path`, never the temporary file."""
    path = os.fspath(path)
    directory = check_writable(path)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise type(error)(f"cannot write {path!r}: {error.strerror or error}") from error
    except BaseException:
        _remove(temporary)
        raise
    return path


def _remove(temporary):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
