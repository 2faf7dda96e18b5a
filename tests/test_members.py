"""pipeline.members: which member names are images of their class, and the reject rows."""
from __future__ import annotations

import pytest

from pipeline.members import member_name_problem, reject_row


@pytest.mark.parametrize("name, reason", [
    ("n01440764_10026.JPEG", None), ("n01440764_1.jpeg", None), ("n01440764_7.png", None),
    ("../n01440764_1.JPEG", "unsafe_member_name"), ("/etc/passwd", "unsafe_member_name"),
    ("sub/n01440764_1.JPEG", "unexpected_directory"), ("n01440764-1.JPEG", "bad_member_name"),
    ("n01443537_1.JPEG", "wnid_mismatch"), ("n01440764_1.txt", "not_an_image_name"),
])
def test_member_names(name, reason):
    problem = member_name_problem(name, "n01440764")
    assert (problem[0] if problem else None) == reason


def test_a_reject_row_names_the_member_and_its_stage():
    row = reject_row("n01440764_1.JPEG", "n01440764", "corrupt", "bad Huffman code", "n01440764_1", stage="decode")
    assert row["member"] == "n01440764_1.JPEG" and row["reason"] == "corrupt" and row["stage"] == "decode"
