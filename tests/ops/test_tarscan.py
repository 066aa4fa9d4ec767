import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.dataset.tars import TarWriter
from ops.tarscan import CorruptTar, iter_samples, sample_keys
from tests.ops.tar_damage import KINDS, damaged, header_offsets


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


def _long_pax_tar(path, samples):
    """A tar as webdataset writes it: a float mtime puts a pax header before every member."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(samples):
            for ext, data in (("jpg", bytes([i % 256]) * (700 + i % 900)), ("txt", b"a caption"), ("json", b"{}")):
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size, info.mtime = len(data), 1_700_000_000.5 + i
                tf.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tf:
        return tf.getmembers()


def _corrupt(path, offset, field_start, value):
    data = bytearray(path.read_bytes())
    data[offset + field_start : offset + field_start + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("which", "field_start", "value"),
    [
        ("member", 3, b"\xff"),  # the name
        ("member", 124, b"00000000777"),  # a wrong but well-formed size: the walk goes astray after it
        ("member", 124, b"\xff" * 12),  # a base-256 size far past the end of the file
        ("member", 124, b"-0000001000"),  # a negative size
        ("member", 124, b"zz"),  # a size that does not parse
        ("pax", 124, b"00000077777"),  # a pax header whose data runs into the member after it
        ("pax", 156, b"L"),  # the pax header read as a GNU long name
    ],
)
def test_a_corrupt_header_late_in_a_long_tar_is_refused_at_its_offset(tmp_path, monkeypatch, which, field_start, value):
    monkeypatch.setattr("ops.tarscan._CHECK_CHUNK", 100)  # several numpy batches, the bad header in a late one
    path = tmp_path / "t.tar"
    members = _long_pax_tar(path, 400)
    assert len(sample_keys(path)) == 400
    member = members[-40]
    offset = member.offset_data - 512 if which == "member" else member.offset
    _corrupt(path, offset, field_start, value)
    with pytest.raises(tarfile.ReadError, match=f"bad header checksum at byte {offset}$"):
        sample_keys(path)


def test_the_first_of_several_corrupt_headers_is_reported(tmp_path):
    path = tmp_path / "t.tar"
    members = _long_pax_tar(path, 50)
    first, second = members[30].offset_data - 512, members[20].offset
    _corrupt(path, first, 124, b"00000000777")
    _corrupt(path, second, 0, b"\x01")
    with pytest.raises(tarfile.ReadError, match=f"at byte {second}$"):
        sample_keys(path)


@pytest.mark.parametrize("layout", ["signed", "seven digits", "spaces"])
def test_checksums_in_other_writers_layouts_are_accepted(tmp_path, layout):
    """Old writers summed bytes as signed chars, and checksum fields come in several spellings."""
    path = tmp_path / "t.tar"
    _write(path, tarfile.USTAR_FORMAT, ["çà-ü.jpg", "plain.txt"])  # a name with bytes above 127
    data = bytearray(path.read_bytes())
    header = data[:512]
    header[148:156] = b" " * 8
    unsigned = sum(header)
    if layout == "signed":
        data[148:156] = b"%06o\0 " % (unsigned - 256 * sum(b >= 128 for b in header))
    elif layout == "seven digits":
        data[148:156] = b"%07o\0" % unsigned
    else:
        data[148:156] = b" %06o\0" % unsigned
    path.write_bytes(bytes(data))
    assert sample_keys(path) == {"çà-ü", "plain"} == _keys_by_tarfile(path)


def test_files_too_short_for_a_header(tmp_path):
    for size in (0, 1, 511):
        path = tmp_path / f"{size}.tar"
        path.write_bytes(b"\0" * size)
        assert sample_keys(path) == set()


# --- streaming with every header verified -----------------------------------------------------------------------


def _samples(n: int) -> list[tuple[str, dict[str, bytes]]]:
    return [(f"{i:09d}", {"jpg": bytes([i % 251]) * (i * 53 % 1200), "txt": b"cap %d" % i}) for i in range(n)]


def _tar_bytes(samples, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.pax_headers = {"comment": "x" * (len(key) % 3)} if fmt == tarfile.PAX_FORMAT else {}
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _read_all(data: bytes, keys) -> list:
    return list(iter_samples(io.BytesIO(data), "t.tar", keys))


def test_a_whole_tar_streams_every_sample():
    samples = _samples(30)
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        assert _read_all(_tar_bytes(samples, fmt), [k for k, _ in samples]) == samples
    assert list(iter_samples(io.BytesIO(_tar_bytes([])), "empty.tar", [])) == []


@settings(max_examples=200, derandomize=True, deadline=None)
@given(
    n=st.integers(2, 25),
    kind=st.sampled_from([*KINDS, "junk_after_end"]),
    where=st.integers(0, 10**6),
    fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]),
)
def test_damage_raises_and_never_reads_as_a_shorter_tar(n, kind, where, fmt):
    """Whatever the damage, a reader gets all the samples or CorruptTar: never a silent subset of them."""
    samples = _samples(n)
    data = _tar_bytes(samples, fmt)
    data = data + b"junk" * (1 + where % 100) if kind == "junk_after_end" else damaged(data, kind, where)
    try:
        got = _read_all(data, [k for k, _ in samples])
    except CorruptTar as exc:
        assert "t.tar" in str(exc)
        return
    assert got == samples, kind


def test_a_corrupt_header_is_named_with_its_offset():
    data = _tar_bytes(_samples(5))
    at = header_offsets(data)[4]
    data = data[: at + 10] + b"\xff" + data[at + 11 :]
    with pytest.raises(CorruptTar, match=rf"t.tar: bad header checksum at byte {at}"):
        _read_all(data, None)


def test_tarfile_itself_reads_a_damaged_tar_as_a_shorter_one():
    """Why the reader exists: tarfile's stream mode ends quietly at the first bad header."""
    data = _tar_bytes(_samples(10))
    at = header_offsets(data)[8]
    data = data[:at] + bytes(b ^ 0x01 for b in data[at : at + 16]) + data[at + 16 :]
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        assert 0 < sum(1 for m in tf if m.isfile()) < 20
    with pytest.raises(CorruptTar):
        _read_all(data, None)


def test_a_global_pax_header_between_a_member_and_its_pax_header_changes_nothing(tmp_path):
    """Both readers read a global header (type g) past: it must not take the next member's extended header (here
    the one that holds its long path)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in ("000000000.jpg", "d/" * 60 + "000000001.jpg"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
    data = buf.getvalue()
    extended, at = header_offsets(data)[1:3]  # the second member's extended header (its path), then its header
    assert data[extended + 156 : extended + 157] == b"x"
    glob = tarfile.TarInfo("global")
    glob.type = tarfile.XGLTYPE
    data = data[:at] + glob.tobuf(tarfile.USTAR_FORMAT) + data[at:]
    (tmp_path / "g.tar").write_bytes(data)
    expected = {"000000000", "000000001"}
    assert sample_keys(tmp_path / "g.tar") == {k for k, _ in _read_all(data, None)} == expected
