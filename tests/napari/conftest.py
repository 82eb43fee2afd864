"""The napari tests run in real Qt windows: on the display there is, else on an Xvfb X server started here
(OpenGL by Mesa's software renderer); where Qt cannot start even so they skip, saying why."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys

import pytest

# what the tests need of Qt: napari's window with an OpenGL canvas drawing an image layer
PROBE = "import napari, numpy; v = napari.Viewer(show=False); v.add_image(numpy.zeros((2, 4, 4))); v.close()"


PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent ends


def end_with_parent() -> None:
    """In the child: be terminated when the test process ends (the Qt application must outlive its X server's
    connection, or Qt exits on the broken connection)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_xvfb() -> bool:
    """Start an Xvfb server on a free display, named in DISPLAY, when there is no display and Xvfb is
    installed (Linux); it ends with the test process. Whether one was started."""
    if os.environ.get("DISPLAY") or shutil.which("Xvfb") is None or not sys.platform.startswith("linux"):
        return False
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=end_with_parent)
    os.close(write)
    with os.fdopen(read) as lines:
        number = lines.readline().strip()
    if not number:
        server.kill()
        return False
    os.environ["DISPLAY"] = f":{number}"
    return True


@pytest.fixture(scope="session", autouse=True)
def qt_display():
    """A display napari's Qt window opens on, checked in a separate process (a Qt that cannot start aborts);
    an Xvfb started here stays until the test process ends."""
    pytest.importorskip("napari", reason="Qt cannot start: the napari extra is not installed "
                                         "(pip install 'deepsmlm[napari-test]')")
    start_xvfb()
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        pytest.skip(f"Qt cannot start (DISPLAY={os.environ.get('DISPLAY')!r}): {reason}")
