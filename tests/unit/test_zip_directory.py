"""Opening a zip costs what its table of contents says (issue #12, finding
10): zipfile reads the whole central directory and makes an object per entry
before the first entry is extracted, so 2.3 million empty entries took about
1.4 GB of the worker's memory before the entry cap was reached. The End Of
Central Directory record is now read first and the entries counted before
zipfile parses anything. The memory tests measure a separate Python process
(its peak resident size, before and after the call) and are bounds, not
timings."""

import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hakobune.worker.source import Limits, SourceError, extract_archive

ROOT = Path(__file__).resolve().parents[2]
# The worker may grow by less than this while it refuses the archive.
MEMORY_BOUND_MB = 50
# Also the measured process's address space, so that a failing run cannot
# take the memory of the host it shares.
ADDRESS_SPACE_LIMIT = 1536 * 1024 * 1024

_LOCAL = struct.Struct("<4s5H3L2H")  # 30 bytes, then the name
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # 46 bytes, then the name
_END = struct.Struct("<4s4H2LH")  # 22 bytes
_END64 = struct.Struct("<4sQ2H2L4Q")  # 56 bytes
_END64_LOCATOR = struct.Struct("<4sLQL")  # 20 bytes
DOS_DATE = 0x21  # 1980-01-01


def write_empty_entries_zip(path: Path, count: int, *, claim: int | None = None, chunk: int = 50_000) -> None:
    """A zip of `count` empty stored files (names of 7 hex digits), written
    in slices so that the test itself stays small; the central directory is
    ZIP64's when the count passes 65,535, as zip tools write it. With
    `claim`, the end record states that many entries instead (a lie)."""
    name_length = 7
    local_size = _LOCAL.size + name_length
    with open(path, "wb") as out:
        local_head = _LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, DOS_DATE, 0, 0, 0, name_length, 0)
        for first in range(0, count, chunk):
            out.write(b"".join(local_head + b"%07x" % i for i in range(first, min(first + chunk, count))))
        directory_at = out.tell()
        for first in range(0, count, chunk):
            out.write(b"".join(
                _CENTRAL.pack(b"PK\x01\x02", 20, 20, 0, 0, 0, DOS_DATE, 0, 0, 0, name_length, 0, 0, 0, 0,
                              0o100644 << 16, i * local_size) + b"%07x" % i
                for i in range(first, min(first + chunk, count))
            ))
        directory_size = out.tell() - directory_at
        stated = count if claim is None else claim
        if stated > 0xFFFF:
            end64_at = out.tell()
            out.write(_END64.pack(b"PK\x06\x06", 44, 45, 45, 0, 0, stated, stated, directory_size, directory_at))
            out.write(_END64_LOCATOR.pack(b"PK\x06\x07", 0, end64_at, 1))
            out.write(_END.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, directory_size, directory_at, 0))
        else:
            out.write(_END.pack(b"PK\x05\x06", 0, 0, stated, stated, directory_size, directory_at, 0))


def test_the_generated_zip_is_one_zipfile_reads(tmp_path):
    """The generator makes what zipfile takes (checked on a smaller one)."""
    small = tmp_path / "small.zip"
    write_empty_entries_zip(small, 70_000)  # past 65,535: ZIP64's end records
    with zipfile.ZipFile(small) as bundle:
        names = bundle.namelist()
        assert len(names) == 70_000 and names[-1] == "%07x" % 69_999
        assert bundle.read(names[5]) == b""


def measure_extraction(archive: Path, dest: Path) -> dict:
    """Runs extract_archive in a fresh Python process and returns what it was
    told and how much its peak resident memory grew, in MB. The peak is the
    process's own high-water mark (VmHWM): getrusage's ru_maxrss would do on
    a long-lived worker, but Linux carries a parent's peak into a child across
    fork and exec, which here would hide growth below the test runner's size."""
    code = f"""
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_LIMIT}, {ADDRESS_SPACE_LIMIT}))
from hakobune.worker.source import SourceError, extract_archive

def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

before = peak_kb()
try:
    extract_archive(Path(sys.argv[1]), Path(sys.argv[2]))
    told = None
except SourceError as exc:
    told = str(exc)
except MemoryError:
    told = "MemoryError"
after = peak_kb()
print(json.dumps({{"told": told, "grew_mb": (after - before) / 1024, "peak_mb": after / 1024}}))
"""
    result = subprocess.run([sys.executable, "-c", code, str(archive), str(dest)], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("count, claim, told", [
    (2_300_000, None, "The archive has 2,300,000 entries; the limit is 20,000."),
    (600_000, 5, "The archive has more than 20,000 entries."),
], ids=["2.3 million entries", "600,000 entries, the end record says 5"])
def test_a_zip_of_millions_of_empty_entries_is_refused_with_flat_memory(tmp_path, count, claim, told):
    archive = tmp_path / "many.zip"
    write_empty_entries_zip(archive, count, claim=claim)
    assert archive.stat().st_size < Limits().max_archive_bytes  # it gets past the size cap
    measured = measure_extraction(archive, tmp_path / "ws")
    print(f"{count:,} entries, {archive.stat().st_size / 1e6:.0f} MB: the worker grew by {measured['grew_mb']:.1f} MB "
          f"(peak {measured['peak_mb']:.0f} MB)")
    assert measured["grew_mb"] < MEMORY_BOUND_MB
    assert measured["told"] is not None and told in measured["told"]
    assert not any((tmp_path / "ws").iterdir())


def test_an_oversized_list_of_contents_is_refused_before_it_is_read(tmp_path):
    """An end record that says the central directory takes 40 MB: refused
    from the record alone (the bytes are not there to be read)."""
    archive = tmp_path / "big-directory.zip"
    archive.write_bytes(_LOCAL.pack(b"PK\x03\x04", 20, 0, 0, 0, DOS_DATE, 0, 0, 0, 1, 0) + b"a"
                        + _END.pack(b"PK\x05\x06", 0, 0, 1, 1, 40_000_000, 31, 0))
    with pytest.raises(SourceError, match=r"The archive's list of contents takes 40 MB; Hakobune reads at most 32 MB"):
        extract_archive(archive, tmp_path / "ws")


def test_an_ordinary_zip_still_unpacks(tmp_path):
    archive = tmp_path / "app.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("app/app.py", "print('hi')\n")
        bundle.writestr("app/requirements.txt", "flask\n")
        bundle.comment = b"a comment, so the end record is searched for"
    extracted = extract_archive(archive, tmp_path / "ws")
    assert (extracted.root / "app.py").read_text() == "print('hi')\n"
