"""Lazy stack reading: each TIFF flavour and an array read back exactly the frames written; bad input is one
line naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from deepsmlm.errors import UserInputError
from deepsmlm.io.images import ARRAY, array_stack, check_finite, open_stack
from deepsmlm.io.tiff import write_stack

FRAMES = np.random.default_rng(0).integers(0, 60000, (7, 12, 10), dtype=np.uint16)


def _written(tmp_path: Path, name: str, data: np.ndarray = FRAMES, **kwargs) -> Path:
    path = tmp_path / name
    tifffile.imwrite(path, data, **kwargs)
    return path


@pytest.mark.parametrize(
    ("name", "kwargs", "memmapped"),
    [
        ("classic.tif", {}, True),
        ("big.tif", {"bigtiff": True}, True),
        ("bigendian.tif", {"byteorder": ">"}, True),
        ("imagej.tif", {"imagej": True, "metadata": {"axes": "TYX"}}, True),
        ("ome.ome.tif", {"ome": True, "metadata": {"axes": "TYX"}}, True),
        ("zlib.tif", {"compression": "zlib"}, False),
        ("tiled.tif", {"tile": (16, 16)}, False),
    ],
)
def test_file_flavours_read_back_exactly(tmp_path, name, kwargs, memmapped):
    with open_stack(_written(tmp_path, name, **kwargs)) as stack:
        assert (stack.n_frames, len(stack), stack.shape, stack.dtype) == (7, 7, (12, 10), np.dtype(np.uint16))
        assert stack.memmapped is memmapped
        assert stack.pixel_size_nm is None
        np.testing.assert_array_equal(stack[:], FRAMES)
        np.testing.assert_array_equal(stack[3], FRAMES[3])
        np.testing.assert_array_equal(stack[-1], FRAMES[-1])
        np.testing.assert_array_equal(stack[5:1:-2], FRAMES[5:1:-2])
        assert stack[4:4].shape == (0, 12, 10)
        assert stack[:].dtype.isnative
        with pytest.raises(IndexError):
            stack[7]


def test_imagej_hyperstack_flattens_in_page_order(tmp_path):
    data = FRAMES[:6].reshape(1, 3, 2, 12, 10)  # T Z C Y X
    path = _written(tmp_path, "hyper.tif", data, imagej=True, metadata={"axes": "TZCYX"})
    with open_stack(path) as stack:
        assert stack.n_frames == 6
        np.testing.assert_array_equal(stack[:], FRAMES[:6])


def test_appended_pages_form_one_stack(tmp_path):
    path = tmp_path / "appended.tif"
    for frame in FRAMES:
        tifffile.imwrite(path, frame, append=True)
    with open_stack(path) as stack:
        assert not stack.memmapped
        np.testing.assert_array_equal(stack[:], FRAMES)


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_chunks_reassemble_the_stack(tmp_path, compression, chunk):
    with open_stack(_written(tmp_path, "s.tif", compression=compression)) as stack:
        starts, parts = zip(*stack.iter_chunks(chunk))
    assert starts == tuple(range(0, 7, chunk))
    assert all(len(p) <= chunk for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), FRAMES)


def test_folder_of_singles_sorts_naturally(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    expected = np.arange(1, 12, dtype=np.uint16)[:, None, None] * np.ones((12, 10), np.uint16)
    for i, frame in enumerate(expected, 1):  # lexical order would put frame10 before frame2
        tifffile.imwrite(folder / f"frame{i}{('.tif', '.tiff', '.TIF')[i % 3]}", frame)
    (folder / "notes.txt").write_text("not a frame")
    with open_stack(folder) as stack:
        assert (stack.n_frames, stack.shape, stack.memmapped, stack.path) == (11, (12, 10), False, folder)
        np.testing.assert_array_equal(stack[:], expected)
        np.testing.assert_array_equal(np.concatenate([c for _, c in stack.iter_chunks(4)]), expected)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
def test_pixel_size_from_our_writer(tmp_path, dtype):
    path = tmp_path / "px.tif"
    write_stack(path, FRAMES.astype(dtype), pixel_size_nm=110)
    with open_stack(path) as stack:
        assert stack.pixel_size_nm == pytest.approx(110)
        np.testing.assert_array_equal(stack[:], FRAMES.astype(dtype))


def test_pixel_size_from_ome_and_resolution_tags(tmp_path):
    ome_meta = {"axes": "TYX", "PhysicalSizeX": 0.16, "PhysicalSizeXUnit": "µm"}
    ome = _written(tmp_path, "px.ome.tif", ome=True, metadata=ome_meta)
    cm = _written(tmp_path, "cm.tif", resolution=(1e7 / 95, 1e7 / 95), resolutionunit="CENTIMETER")
    inch = _written(tmp_path, "dpi.tif", resolution=(72, 72), resolutionunit="INCH")  # print DPI, not a pixel size
    for path, expected in [(ome, 160), (cm, 95), (inch, None)]:
        with open_stack(path) as stack:
            assert stack.pixel_size_nm == (pytest.approx(expected) if expected else None)


def test_closed_stack_refuses_reads(tmp_path):
    stack = open_stack(_written(tmp_path, "s.tif"))
    stack.close()
    stack.close()
    with pytest.raises(ValueError, match="closed"):
        stack[0]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path to open, words the message must hold)."""
    cases = {"missing": (tmp_path / "missing.tif", "no such file")}
    not_tiff = tmp_path / "notes.tif"
    not_tiff.write_text("hello")
    cases["not a TIFF"] = (not_tiff, "not a readable TIFF")
    rgb = FRAMES[:3, :, :, None].repeat(3, -1).astype(np.uint8)
    cases["RGB"] = (_written(tmp_path, "rgb.tif", rgb, photometric="rgb"), "not 2D")
    mixed = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(mixed) as tif:
        for frame in (FRAMES[0], FRAMES[1], FRAMES[2, :6]):
            tif.write(frame, metadata=None)
    cases["mixed sizes"] = (mixed, "page 2 is (6, 10)")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    cases["empty folder"] = (empty_dir, "no .tif")
    no_pages = tmp_path / "nopages.tif"
    no_pages.write_bytes(b"II*\x00\x00\x00\x00\x00")
    cases["zero frames"] = (no_pages, "no image frames")
    for name, kwargs in [("raw", {}), ("zlib", {"compression": "zlib"}), ("ij", {"imagej": True})]:
        whole = _written(tmp_path, f"whole_{name}.tif", **kwargs).read_bytes()
        cut = tmp_path / f"cut_{name}.tif"
        cut.write_bytes(whole[: len(whole) // 2])
        cases[f"truncated {name}"] = (cut, "truncated")
    return cases


def test_bad_inputs_give_one_line_naming_the_file(tmp_path, one_line):
    for name, (path, words) in _bad_inputs(tmp_path).items():
        with pytest.raises(UserInputError) as info:
            with open_stack(path) as stack:
                stack[:]
        message = one_line(str(info.value))
        assert str(path) in message and words in message, (name, message)


def test_corrupt_compressed_page_names_the_frame(tmp_path, one_line):
    path = _written(tmp_path, "z.tif", compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[4].dataoffsets[0]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    with open_stack(path) as stack:
        np.testing.assert_array_equal(stack[:4], FRAMES[:4])
        with pytest.raises(UserInputError) as info:
            stack[:]
    message = one_line(str(info.value))
    assert str(path) in message and "frame 4" in message


def test_folder_problems_name_the_offending_file(tmp_path, one_line):
    folder = tmp_path / "frames"
    folder.mkdir()
    tifffile.imwrite(folder / "f1.tif", FRAMES[0])
    tifffile.imwrite(folder / "f2.tif", FRAMES[1, :6])
    tifffile.imwrite(folder / "f3.tif", FRAMES[:2])
    (folder / "f4.tif").write_text("broken")
    with open_stack(folder) as stack:
        np.testing.assert_array_equal(stack[0], FRAMES[0])
        problems = [("f2.tif", "mixed frame sizes"), ("f3.tif", "2 pages"), ("f4.tif", "not a readable")]
        for i, (file, words) in enumerate(problems, 1):
            with pytest.raises(UserInputError) as info:
                stack[i]
            message = one_line(str(info.value))
            assert str(folder / file) in message and words in message, message
    multi = tmp_path / "multi"
    multi.mkdir()
    tifffile.imwrite(multi / "a.tif", FRAMES[:2])
    with pytest.raises(UserInputError, match="2 frames; a folder stack needs one frame per file"):
        open_stack(multi)


def test_check_finite_names_file_and_frame(one_line):
    good = np.zeros((4, 3, 3), np.float32)
    check_finite(good, "s.tif", 10)
    check_finite(FRAMES, "s.tif")  # integers are always finite
    bad = good.copy()
    bad[2, 1, 1] = np.inf
    bad[3, 0, 0] = np.nan
    with pytest.raises(UserInputError) as info:
        check_finite(bad, "s.tif", 10)
    assert one_line(str(info.value)) == "s.tif: frame 12 (0-based) holds NaN or infinite values"
    with pytest.raises(UserInputError, match="frame 5 "):
        check_finite(bad[3], "s.tif", 5)


def test_an_array_reads_back_as_copies_in_native_byte_order(one_line):
    big_endian = FRAMES.astype(">u2")
    stack = array_stack(big_endian)
    assert (stack.path, stack.n_frames, stack.shape, stack.pixel_size_nm) == (ARRAY, 7, (12, 10), None)
    assert stack.dtype == np.dtype("=u2") and stack[2:5].dtype == np.dtype("=u2")
    np.testing.assert_array_equal(stack[:], FRAMES)
    stack[0][:] = 0  # a copy: the array is untouched
    np.testing.assert_array_equal(big_endian, FRAMES)
    for bad in (FRAMES[0], FRAMES.astype(str), FRAMES[:0]):
        with pytest.raises(UserInputError) as info:
            array_stack(bad)
        assert one_line(str(info.value)).startswith("array: give frames as a (frames, height, width) array")
