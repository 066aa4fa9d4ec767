import io
import tarfile

import pytest

from ops.dataset.tars import TarWriter
from ops.tarscan import sample_keys


def _keys_by_tarfile(path):
    with tarfile.open(path) as tf:
        return {m.name.rsplit("/", 1)[-1].split(".", 1)[0] for m in tf.getmembers() if m.isfile()}


def _write(path, fmt, names):
    with tarfile.open(path, "w", format=fmt) as tf:
        for i, name in enumerate(names):
            data = bytes([i % 251]) * (i * 37 % 1500)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("some/folder")
        folder.type = tarfile.DIRTYPE
        tf.addfile(folder)
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "000000000.jpg"
        tf.addfile(link)


NAMES = [
    "000000000.jpg",
    "000000000.json",
    "000000001.syn.txt",
    "deep/" * 30 + "000000002.jpg",  # > 100 bytes: ustar prefix, pax path or GNU long name
    "x" * 150 + ".txt",  # a basename longer than 100 bytes
    "çà-ü-日本.png",  # non-ASCII: a pax path record
    "000000003",
]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_keys_equal_tarfile_in_every_format(tmp_path, fmt):
    names = NAMES if fmt != tarfile.USTAR_FORMAT else [n for n in NAMES if len(n.rsplit("/", 1)[-1]) < 100]
    names = names if fmt != tarfile.USTAR_FORMAT else [n for n in names if n.isascii()]
    path = tmp_path / "t.tar"
    _write(path, fmt, names)
    assert sample_keys(path) == _keys_by_tarfile(path)
    assert "link" not in sample_keys(path) and "folder" not in sample_keys(path)


def test_keys_of_a_writer_tar_and_an_empty_tar(tmp_path):
    writer = TarWriter(tmp_path / "w.tar")
    for i in range(50):
        writer.add(f"{i:09d}", {"jpg": b"\xff" * i, "txt": b"caption", "json": b"{}"})
    writer.close()
    assert sample_keys(writer.path) == {f"{i:09d}" for i in range(50)}
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    assert sample_keys(empty) == set()


def test_a_corrupt_header_is_refused(tmp_path):
    path = tmp_path / "t.tar"
    _write(path, tarfile.PAX_FORMAT, NAMES)
    data = bytearray(path.read_bytes())
    data[5] ^= 0xFF  # inside the first header's name: its checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(tarfile.ReadError, match="checksum"):
        sample_keys(path)
