import gzip

import numpy as np
import pytest
import torch
from fake_data import write_idx

from mnistlab.core.errors import DataError
from mnistlab.data.idx import read_idx, read_images_and_labels


def test_reads_uint8_images_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-idx3-ubyte", array)
    plain = read_idx(tmp_path / "a-idx3-ubyte")
    assert plain.dtype == torch.uint8 and plain.shape == (2, 3, 4)
    assert torch.equal(plain, torch.from_numpy(array))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress((tmp_path / "a-idx3-ubyte").read_bytes()))
    assert torch.equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), plain)


def test_big_endian_int32(tmp_path):
    values = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "x").write_bytes(bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + values.tobytes())
    assert read_idx(tmp_path / "x").tolist() == [1, -2, 70000]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "bad magic number empty file"),
        (b"\x08\x03\x00\x00" + bytes(16), "bad magic number 08030000"),
        (bytes([0, 0, 0x08, 3]) + (2).to_bytes(4, "big"), "truncated header"),
        (bytes([0, 0, 0x08, 1]) + (10).to_bytes(4, "big") + bytes(7), "truncated: header says shape (10,)"),
        (bytes([0, 0, 0x08, 1]) + (2).to_bytes(4, "big") + bytes(5), "has trailing bytes"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_and_corrupt_gzip(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope")
    (tmp_path / "broken.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read file"):
        read_idx(tmp_path / "broken.gz")


def test_pairs_are_checked(tmp_path):
    write_idx(tmp_path / "img", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "lab", np.array([1, 2], np.uint8))
    with pytest.raises(DataError, match="2 labels for 3 images"):
        read_images_and_labels(tmp_path / "img", tmp_path / "lab")
    write_idx(tmp_path / "lab", np.array([1, 12, 3], np.uint8))
    with pytest.raises(DataError, match="label 12 at index 1 is outside 0-9"):
        read_images_and_labels(tmp_path / "img", tmp_path / "lab")
    write_idx(tmp_path / "lab", np.array([1, 9, 0], np.uint8))
    images, labels = read_images_and_labels(tmp_path / "img", tmp_path / "lab")
    assert images.shape == (3, 28, 28) and labels.dtype == torch.int64 and labels.tolist() == [1, 9, 0]
