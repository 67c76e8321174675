"""The helpers every background job shares (recsite/jobs.py, recsite/jobfiles.py): the
heartbeat that keeps a slow job from looking dead, its memory peak, and the last progress."""

import time

import numpy as np

from recsite.jobfiles import JobFiles
from recsite.jobs import JobHeartbeat


def test_the_heartbeat_keeps_progress_fresh_while_one_step_blocks(tmp_path):
    files = JobFiles(tmp_path / "job")
    with JobHeartbeat(files, every=0.05) as heartbeat:
        heartbeat.update(phase="writing", fraction=0.4, exported=120)
        first = files.read_progress()
        time.sleep(0.4)  # one long step that reports nothing
        later = files.read_progress()
    assert later["at"] > first["at"]
    # What the job reported last is what the pages keep seeing.
    assert later["phase"] == "writing" and later["fraction"] == 0.4 and later["exported"] == 120
    assert not files.is_stale(stale_after=5)


def test_the_heartbeat_stops_with_the_job(tmp_path):
    files = JobFiles(tmp_path / "job")
    with JobHeartbeat(files, every=0.05):
        pass
    stopped = files.read_progress()["at"]
    time.sleep(0.2)
    assert files.read_progress()["at"] == stopped


def test_the_memory_peak_sees_a_short_lived_allocation(tmp_path):
    files = JobFiles(tmp_path / "job")
    with JobHeartbeat(files, track_memory=True) as heartbeat:
        before = heartbeat.peak
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MB, touched
        time.sleep(0.3)
        del block
    assert heartbeat.peak - before > 48 * 2**20


def test_log_lines_and_the_outcome(tmp_path):
    files = JobFiles(tmp_path / "job")
    with JobHeartbeat(files) as heartbeat:
        heartbeat.log("Read 1,000 interactions.", 0.3)
        heartbeat.log("Fitting.")
    assert files.read_progress()["fraction"] == 0.3
    lines = files.read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["Read 1,000 interactions.", "Fitting."]
    assert all(line.startswith("[") and line[9] == "]" for line in lines)

    files.write_outcome("failed")  # a failed job shows how far it got
    assert files.read_progress()["phase"] == "failed"
    assert files.read_progress()["fraction"] == 0.3
    files.write_outcome("succeeded", exported=10)
    assert files.read_progress()["fraction"] == 1.0 and files.read_progress()["exported"] == 10
