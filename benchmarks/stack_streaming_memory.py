"""Peak memory and throughput of streaming a TIFF stack larger than comfort through ``open_stack(...).iter_chunks``.

Writes, page by page (low memory), a ~4 GB uncompressed BigTIFF (memory-mapped path) and a smaller
zlib-compressed TIFF (page-by-page path) of Poisson camera frames under a temporary folder, then
streams each in a fresh subprocess summing all frames, and prints one JSON document: file size,
frames, seconds, frames/s, MB/s (of decoded pixels), peak RSS of the reading process and whether the
sum image matches. Peak RSS is ``VmHWM``; ``ru_maxrss`` is shown too but also counts the parent image
the subprocess was forked from. Each file is read cold (its pages first evicted from the page cache
with ``posix_fadvise(DONTNEED)``) and warm. For contrast, the uncompressed file is also streamed
through a plain ``tifffile.memmap``, whose touched file pages all stay resident.

    python benchmarks/stack_streaming_memory.py [--frames 8000] [--size 512] [--compressed-frames 800] [--chunk 64]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import tifffile

import harness

BANK = 64  # distinct frames, cycled, so writing needs no more than these in memory


def write_synthetic(path: Path, n_frames: int, size: int, compression: str | None) -> np.ndarray:
    """Write n_frames Poisson(100) uint16 frames page by page; return their sum image (uint64)."""
    bank = (np.random.default_rng(0).poisson(100.0, (BANK, size, size)) + 100).astype(np.uint16)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write((bank[i % BANK] for i in range(n_frames)), shape=(n_frames, size, size), dtype=np.uint16,
                  compression=compression)
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    full, rest = divmod(n_frames, BANK)
    return bank.sum(0, dtype=np.uint64) * full + bank[:rest].sum(0, dtype=np.uint64)


def read_phase(path: str, chunk: int, plain_memmap: bool) -> dict:
    """Stream the stack once, summing all frames; run in a fresh process so its peak RSS is the reading alone."""
    from deepsmlm.io.images import open_stack

    baseline_mb = harness.vm_hwm_mb()
    total = None
    t0 = time.perf_counter()
    if plain_memmap:
        frames = tifffile.memmap(path, mode="r")
        n, memmapped = len(frames), True
        for start in range(0, n, chunk):
            part = np.array(frames[start:start + chunk]).sum(0, dtype=np.uint64)
            total = part if total is None else total + part
        del frames
    else:
        with open_stack(path) as stack:
            n, memmapped = stack.n_frames, stack.memmapped
            for _, frames in stack.iter_chunks(chunk):
                part = frames.sum(0, dtype=np.uint64)
                total = part if total is None else total + part
    seconds = time.perf_counter() - t0
    np.save(path + ".sum.npy", total)
    return {"frames": n, "memmapped": memmapped, "seconds": seconds, "baseline_rss_mb": baseline_mb,
            "peak_rss_mb_ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_rss_mb_vmhwm": harness.vm_hwm_mb()}


def _evict(path: Path) -> None:
    """Drop the file's clean pages from the page cache (no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def measure(path: Path, expected: np.ndarray, chunk: int, cold: bool, plain_memmap: bool = False) -> dict:
    if cold:
        _evict(path)
    run = harness.run_child(__file__, ["--read", str(path), "--chunk", str(chunk)] + ["--plain-memmap"] * plain_memmap)
    size = expected.shape[0] * expected.shape[1] * 2
    run.update({
        "cache": "cold" if cold else "warm",
        "reader": "tifffile.memmap (plain, for contrast)" if plain_memmap else "open_stack.iter_chunks",
        "frames_per_s": run["frames"] / run["seconds"],
        "mb_per_s": run["frames"] * size / 1e6 / run["seconds"],
        "sum_image_matches": bool(np.array_equal(np.load(str(path) + ".sum.npy"), expected)),
        "peak_below_1gb": run["peak_rss_mb_vmhwm"] < 1024,
    })
    return run


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--frames", type=int, default=8000, help="frames of the uncompressed stack")
    ap.add_argument("--compressed-frames", type=int, default=800, help="frames of the zlib stack")
    ap.add_argument("--size", type=int, default=512, help="frame height = width in pixels")
    ap.add_argument("--chunk", type=int, default=64, help="frames per chunk")
    ap.add_argument("--read", help=argparse.SUPPRESS)
    ap.add_argument("--plain-memmap", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.read:
        harness.report(read_phase(args.read, args.chunk, args.plain_memmap), indent=None)
        return

    files = []
    with harness.scratch() as tmp:
        for name, n, compression in [("raw", args.frames, None), ("zlib", args.compressed_frames, "zlib")]:
            path = tmp / f"{name}.tif"
            t0 = time.perf_counter()
            expected = write_synthetic(path, n, args.size, compression)
            entry = {"file": name, "compression": compression, "frames": n, "frame_px": [args.size] * 2,
                     "file_gb": path.stat().st_size / 1e9, "write_seconds": time.perf_counter() - t0,
                     "runs": [measure(path, expected, args.chunk, cold) for cold in (True, False)]}
            if compression is None:
                entry["runs"].append(measure(path, expected, args.chunk, cold=True, plain_memmap=True))
            files.append(entry)
            path.unlink()
    harness.report({"benchmark": "stack_streaming_memory", "chunk_frames": args.chunk, "machine": harness.machine(),
                    "files": files}, args.out)


if __name__ == "__main__":
    main()
