"""Writing localization tables chunk by chunk: the writer type, the empty table, and deferred layouts.

A streaming writer is a context manager yielding ``write(table)``; tables arrive in order (canonical
columns, 0-based frames) and the file appears atomically when the block ends without error. Some formats
lay their file out by a yes/no question about all rows (ThunderSTORM: do the x and y uncertainties differ
anywhere? Picasso: is any z non-zero?). :func:`deferred_writer` answers it without holding rows in
memory: tables wait in an anonymous temporary Arrow file in the output folder until one answers yes, or
the stream ends.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa

from deepsmlm.localizations import normalise_table

TableWriter = Callable[[pd.DataFrame], None]


def empty_table() -> pd.DataFrame:
    """A canonical table without rows (what a stream without tables writes)."""
    return normalise_table(pd.DataFrame({c: [] for c in ("frame", "x_nm", "y_nm")}))


@contextmanager
def deferred_writer(open_writer: Callable[[bool], AbstractContextManager[TableWriter]],
                    decides: Callable[[pd.DataFrame], bool], target: Path) -> Iterator[TableWriter]:
    """``write(table)`` into ``open_writer(answer)``, opened once the answer is known: True at the first
    table for which ``decides`` holds (the tables before it are written first, from the spool), False when
    the stream ends without one. The spool lives beside ``target`` and vanishes with the process."""
    with ExitStack() as stack:
        spool: _Spool | None = None
        write: TableWriter | None = None

        def put(table: pd.DataFrame) -> None:
            nonlocal spool, write
            table = normalise_table(table)
            if write is None and decides(table):
                write = _open(stack, open_writer(True), spool)
            if write is not None:
                write(table)
                return
            if spool is None:
                spool = stack.enter_context(_Spool(target.parent))
            spool.append(table)

        yield put
        if write is None:
            _open(stack, open_writer(False), spool)


def _open(stack: ExitStack, writer: AbstractContextManager[TableWriter], spool: _Spool | None) -> TableWriter:
    """Enter ``writer`` and pass it the spooled tables, in order."""
    write = stack.enter_context(writer)
    for table in spool.replay() if spool is not None else ():
        write(table)
    return write


class _Spool:
    """Tables appended to an unnamed temporary Arrow IPC stream, read back in order once."""

    def __init__(self, folder: Path):
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".deepsmlm-spool-")
        self._stream: pa.ipc.RecordBatchStreamWriter | None = None

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def append(self, table: pd.DataFrame) -> None:
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        if self._stream is None:
            self._stream = pa.ipc.new_stream(self._file, arrow.schema)
        self._stream.write_table(arrow)

    def replay(self) -> Iterator[pd.DataFrame]:
        if self._stream is None:
            return
        self._stream.close()
        self._file.seek(0)
        reader = pa.ipc.open_stream(self._file)
        rows = False
        for batch in reader:
            rows = True
            yield batch.to_pandas()
        if not rows:  # only empty tables came: they still name the columns
            yield reader.schema.empty_table().to_pandas()
