"""Writing a file atomically: a temporary file in the same directory, then a rename over the target."""

import os
import tempfile


def write_atomically(path, write):
    """`write(file)` into a temporary file next to `path`, then rename it to `path`: readers never see half a file,
    and on any error the old file stays. The new file gets the mode a plainly created file would (umask applied)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: the directory {directory!r} does not exist")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path
