"""The one progress bar: fractions by bytes when given, by items otherwise; silent unless enabled."""

from __future__ import annotations

import io

from mergesmith.progress import Progress


def test_bytes_drive_the_fraction_of_a_merge() -> None:
    stream = io.StringIO()
    bar = Progress(2, total_bytes=4_000_000, unit="tensors", label="merging", enabled=True, stream=stream)
    bar.advance(3_000_000)
    bar.advance(1_000_000)
    line = stream.getvalue().rsplit("\r", 1)[-1]
    assert line.startswith("merging [" + "#" * 20 + "] 2/2 100% | 4/4 MB | ")
    assert "MB/s | ETA 0:00" in line
    assert bar.line().startswith("merging [" + "#" * 20 + "]")
    half = Progress(2, total_bytes=4_000_000, enabled=False, stream=io.StringIO())
    half.advance(3_000_000)  # one of two tensors, but three quarters of the bytes
    assert half.line().startswith("[" + "#" * 15 + "-" * 5 + "] 1/2  75%")


def test_disabled_writes_nothing_and_clear_blanks_the_line() -> None:
    quiet = io.StringIO()
    bar = Progress(3, enabled=False, stream=quiet)
    bar.advance()
    bar.close()
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    bar = Progress(1, unit="examples", enabled=True, stream=shown)
    bar.advance()
    drawn = shown.getvalue()
    bar.clear()
    assert shown.getvalue() == drawn + "\r" + " " * (len(drawn) - 1) + "\r"
