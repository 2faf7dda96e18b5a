"""pipeline.errors: which failures are known, with their exit status and one line."""
from __future__ import annotations


def test_a_full_disk_is_a_known_failure_naming_the_fix():
    import errno

    from pipeline.errors import known_failure

    code, message = known_failure(OSError(errno.ENOSPC, "No space left on device", "/data/out/_work/part-00003.bin"))
    assert code == 7 and message.startswith("no space left on the device writing /data/out/_work/part-00003.bin; ")
    assert known_failure(OSError(errno.EACCES, "Permission denied")) is None  # a bug or a setup problem: traceback
