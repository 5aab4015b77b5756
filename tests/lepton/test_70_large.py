"""A large `lep storage upload` (default 512 MiB, one multipart body) and download
while the RSS of the node behind CAIRN_URL is sampled every 100 ms from
/proc/PID/status: the node must stream, so its peak stays under a stated bound, and
the file must come back byte-exact (hashed in 1 MiB pieces, never held in memory).

Set CAIRN_LEPTON_SKIP_LARGE=1 to skip it for a quick run; it runs by default."""

import hashlib
import os
import threading
import time

import pytest

from conftest import MIB, lep, unique

SKIP = os.environ.get("CAIRN_LEPTON_SKIP_LARGE", "") not in ("", "0")
SIZE_MIB = int(os.environ.get("CAIRN_LEPTON_LARGE_MIB", "512"))
RSS_MAX_MIB = int(os.environ.get("CAIRN_LEPTON_RSS_MAX_MIB", "400"))
PIECE_BYTES = MIB
# A run of zeros in the middle, written as a hole: the file is sparse-ish.
HOLE_MIB = 64


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class RssSampler(threading.Thread):
    """Samples VmRSS every 100 ms until stopped; keeps the peak and the sample count."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = rss_kib(pid)
        self.samples = 1
        self.error = None
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(0.1):
            try:
                self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
                self.samples += 1
            except (OSError, AssertionError) as e:  # the node died: report, stop
                self.error = e
                return

    def stop(self):
        self.done.set()
        self.join(timeout=5)


def write_pseudo_random_file(path, size_mib):
    """size_mib MiB of random pieces around a HOLE_MIB hole; returns its SHA-256."""
    digest = hashlib.sha256()
    hole_start = size_mib // 2
    zeros = bytes(PIECE_BYTES)
    with open(path, "wb") as f:
        for i in range(size_mib):
            if hole_start <= i < hole_start + HOLE_MIB:
                f.seek(PIECE_BYTES, os.SEEK_CUR)
                digest.update(zeros)
            else:
                piece = os.urandom(PIECE_BYTES)
                f.write(piece)
                digest.update(piece)
        f.truncate(size_mib * PIECE_BYTES)
    return digest.hexdigest()


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(PIECE_BYTES):
            digest.update(piece)
    return digest.hexdigest()


@pytest.mark.skipif(SKIP, reason="CAIRN_LEPTON_SKIP_LARGE is set")
def test_large_upload_streams_and_downloads_byte_exact(tmp_path, capsys):
    pid = int(os.environ["CAIRN_NODE_PID"])
    assert SIZE_MIB > HOLE_MIB * 2
    source = tmp_path / "large.bin"
    expected = write_pseudo_random_file(source, SIZE_MIB)
    assert source.stat().st_size == SIZE_MIB * MIB
    remote_dir = "/" + unique("large")
    lep("storage", "mkdir", remote_dir)
    baseline_mib = rss_kib(pid) / 1024
    sampler = RssSampler(pid)
    sampler.start()
    started = time.monotonic()
    try:
        lep("storage", "upload", str(source), f"{remote_dir}/large.bin", timeout=900)
        uploaded_s = time.monotonic() - started
        upload_peak_mib = sampler.peak_kib / 1024
        target = tmp_path / "back.bin"
        lep("storage", "download", f"{remote_dir}/large.bin", str(target), timeout=900)
        total_s = time.monotonic() - started
    finally:
        sampler.stop()
    peak_mib = sampler.peak_kib / 1024
    with capsys.disabled():
        print(
            f"\n[large upload] {SIZE_MIB} MiB: upload {uploaded_s:.1f} s, download"
            f" {total_s - uploaded_s:.1f} s; node {pid} RSS baseline {baseline_mib:.0f} MiB,"
            f" peak {upload_peak_mib:.0f} MiB during upload, {peak_mib:.0f} MiB overall"
            f" ({sampler.samples} samples, bound {RSS_MAX_MIB} MiB)"
        )
    assert sampler.error is None, f"sampling the node's RSS failed: {sampler.error}"
    assert sampler.samples >= 10, "too few RSS samples to mean anything"
    assert target.stat().st_size == SIZE_MIB * MIB
    source.unlink()
    assert sha256_of(target) == expected
    target.unlink()
    assert peak_mib < RSS_MAX_MIB, (
        f"node RSS peaked at {peak_mib:.0f} MiB (baseline {baseline_mib:.0f} MiB) while a"
        f" {SIZE_MIB} MiB file went up and down; bound {RSS_MAX_MIB} MiB"
    )
    lep("storage", "rmdir", "-r", remote_dir)
