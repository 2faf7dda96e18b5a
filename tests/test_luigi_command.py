"""The build's command line as a person meets it: run from a folder without luigi.cfg, each known
failure is one ``error:`` line with its own exit status, a build ends with a summary, a
terminal gets a progress bar, and a cluster's scheduler listens on 127.0.0.1 with the package's
Luigi defaults."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
import urllib.request

import pytest

from buildutil import free_port
from tools.demo_archive import make_archive

DEMO = ["--min-images", "31", "--val-per-class", "5", "--samples-per-shard", "200"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("cli") / "demo.tar", seed=2).path


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    return dict(env, **extra)


def luigi(*args, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    """The README's command, run from ``cwd`` (a folder with no luigi.cfg)."""
    assert not (cwd / "luigi.cfg").exists()
    return subprocess.run([sys.executable, "-m", "luigi", "--module", "pipeline", "BuildImageNet21KP",
                           "--local-scheduler", *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return lines[0]


FAILURES = {  # name: (arguments after --archive ARCHIVE --output-dir OUT, exit status, words of the message)
    "nothing kept": ([], 6, "has at least 501 images (--min-images; the largest has 60): nothing to build"),
    "bad choice": (["--val-rule", "randm", *DEMO], 2, "--val-rule randm: not one of first, first_en_us, random"),
    "not a number": (["--min-images", "many"], 2, "--min-images many: not a whole number"),
    "no training images": (["--min-images", "31"], 2, "--min-images 31 with --val-per-class 50: a class with 31 "
                                                     "images would give all of them to validation"),
    "is_a without a file": (["--tree-source", "is_a", *DEMO], 2, "--tree-source is_a needs --is-a-path"),
    "empty shards": (["--samples-per-shard", "0", *DEMO[:4]], 2, "--samples-per-shard 0: must be at least 1"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_failed_build_is_one_line_and_its_own_exit_status_from_any_folder(case, archive, tmp_path):
    args, status, words = FAILURES[case]
    proc = luigi("--archive", str(archive), "--output-dir", str(tmp_path / "out"), *args, cwd=tmp_path)
    assert proc.returncode == status, proc.stderr[-3000:]
    assert words in one_error_line(proc)
    assert proc.stdout == ""


def test_a_bad_archive_or_a_missing_parameter_is_refused_before_any_work(tmp_path):
    (tmp_path / "README.md").write_text("# not an archive\n")
    (tmp_path / "empty").mkdir()
    for archive, words in [(tmp_path / "nope.tar", "archive not found"),
                           (tmp_path / "README.md", "is not a tar, a .tar.gz or a directory"),
                           (tmp_path / "empty", "holds no class tars")]:
        proc = luigi("--archive", str(archive), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
        assert proc.returncode == 3 and words in one_error_line(proc)
    proc = luigi("--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2 and one_error_line(proc) == "error: BuildImageNet21KP needs --archive"
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_missing_wordnet_is_one_line_naming_the_fix(archive, tmp_path):
    proc = luigi("--archive", str(archive), "--output-dir", str(tmp_path / "out"), *DEMO, cwd=tmp_path,
                 env=clean_env(IMAGENET21KP_NLTK_DATA=str(tmp_path / "no-nltk-data")))
    assert proc.returncode == 5
    assert "python -m tools.install_wordnet" in one_error_line(proc)


def test_a_build_prints_its_summary_and_nothing_else(archive, tmp_path):
    out = tmp_path / "out"
    proc = luigi("--archive", str(archive), "--output-dir", str(out), *DEMO, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    lines = proc.stdout.splitlines()
    entries = stats["accounting"]["archive_entries"]
    assert lines[0].startswith("ImageNet-21K-P built in ") and f"({entries} archive entries read, " in lines[0]
    assert lines[0].endswith(f"img/s): {out}")
    dropped = stats["dropped_classes"]["too_few_images"]
    rejects = stats["rejects_by_reason"]
    assert lines[1:] == [
        f"  classes     {stats['num_classes']} kept, {dropped} dropped (too_few_images {dropped})",
        f"  train       {stats['samples']['train']} samples in {stats['shards']['train']} shards",
        f"  validation  {stats['samples']['validation']} samples in 1 shard",
        f"  rejects     {sum(rejects.values())}"
        + (" (" + ", ".join(f"{r} {n}" for r, n in sorted(rejects.items(), key=lambda kv: (-kv[1], kv[0])))
           + "; see rejects.parquet)" if rejects else ""),
    ] + ([f"  val dups    {val_dups} validation images have a near-duplicate in train (val_near_duplicates.parquet)"]
         if (val_dups := stats["near_duplicates"]["val_with_train_near_duplicate"]["images"]) else [])
    card = (out / "README.md").read_text()
    assert f"| validation samples | {stats['samples']['validation']} in 1 shard |" in card  # not "1 shards"
    again = luigi("--archive", str(archive), "--output-dir", str(out), *DEMO, cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout.splitlines() == [f"ImageNet-21K-P is complete, nothing to do: {out}", *lines[1:]]
    # a user's own luigi.cfg still wins over the package defaults: here, Luigi's full log
    config = tmp_path / "verbose.cfg"
    config.write_text("[core]\nlog_level = INFO\n")
    verbose = luigi("--archive", str(archive), "--output-dir", str(out), *DEMO, cwd=tmp_path,
                    env=clean_env(LUIGI_CONFIG_PATH=str(config)))
    assert verbose.returncode == 0 and "INFO: Informed scheduler" in verbose.stderr


def test_an_output_dir_is_refused_only_when_it_holds_a_build(archive, tmp_path):
    out = tmp_path / "out"
    first = luigi("--archive", str(archive), "--output-dir", str(out), cwd=tmp_path)  # nothing kept
    assert first.returncode == 6 and (out / "_params.json").is_file()
    assert luigi("--archive", str(archive), "--output-dir", str(out), *DEMO, cwd=tmp_path).returncode == 0
    other = luigi("--archive", str(archive), "--output-dir", str(out), *DEMO[:2], "--val-per-class", "4",
                  *DEMO[4:], cwd=tmp_path)
    assert other.returncode == 4
    assert one_error_line(other) == (f"error: {out} holds a build made with other parameters (val_per_class "
                                     "differ); use a new --output-dir, or delete the old one")



def test_a_terminal_gets_one_progress_bar_with_an_eta(archive, tmp_path):
    cmd = [sys.executable, "-m", "luigi", "--module", "pipeline", "BuildImageNet21KP", "--local-scheduler",
           "--archive", str(archive), "--output-dir", str(tmp_path / "out"), *DEMO, "--workers", "2"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: a 120 x 40 terminal, then the command
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        os.chdir(tmp_path)
        os.execve(cmd[0], cmd, clean_env())
    output = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-3000:]
    frames = text.replace("\r\n", "\n").replace("\r", "\n").splitlines()
    assert any(f.startswith("convert: 100%|") and " images/s]" in f for f in frames), text[-3000:]
    assert any(f.startswith("convert:") and "<" in f for f in frames)  # elapsed<remaining: the ETA
    assert "ImageNet-21K-P built in" in text



def test_the_scheduler_command_listens_on_localhost_with_the_package_defaults(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "scheduler", "--port", str(port)], cwd=tmp_path,
                            env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/resource_list", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.2)
        resources = {r["name"]: r["num_total"] for r in json.loads(body)["response"]}
        assert resources == {"archive_io": 32}
        listening = [line.split()[1] for line in open("/proc/net/tcp").read().splitlines()[1:]
                     if line.split()[3] == "0A"]  # state LISTEN
        assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening
    finally:
        proc.terminate()
        proc.wait(10)
    assert "no authentication" in proc.stderr.read()


def test_no_scheduler_is_one_line_naming_both_ways_out_within_seconds(archive, tmp_path):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "luigi", "--module", "pipeline", "BuildImageNet21KP",
                           "--archive", str(archive), "--output-dir", str(tmp_path / "out"), "--scheduler-port",
                           str(port), *DEMO], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                          timeout=120)
    assert time.monotonic() - started < 30
    assert proc.returncode == 8
    line = one_error_line(proc)
    assert f"localhost:{port}" in line and "--local-scheduler" in line and "python -m pipeline scheduler" in line


def test_help_shows_each_parameter_once_with_its_default_and_the_luigi_options(tmp_path):
    proc = luigi("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "--BuildImageNet21KP-" not in text and text.count("--min-images") == 1
    words = " ".join(text.split())
    assert "(default: 501)" in words and "(default: 1024)" in words and "processed ImageNet-21K-P download" in words
    for option in ("--workers", "--local-scheduler", "--scheduler-host", "--log-level"):
        assert option in text
    assert len(text.splitlines()) < 70


@pytest.mark.parametrize("flag, closest", [("--samples-per-shards", "--samples-per-shard"),
                                           ("--min-image", "--min-images"), ("--jpeg-qualty", "--jpeg-quality")])
def test_an_unknown_or_abbreviated_flag_is_one_line_naming_the_closest(flag, closest, archive, tmp_path):
    proc = luigi("--archive", str(archive), "--output-dir", str(tmp_path / "out"), flag, "31", cwd=tmp_path)
    assert proc.returncode == 2
    assert f"unknown flag {flag}; did you mean {closest}?" in one_error_line(proc)
    assert not (tmp_path / "out").exists()


def test_luigi_own_flag_forms_still_work(archive, tmp_path):
    proc = luigi("--archive", str(archive), "--output-dir", str(tmp_path / "out"), "--BuildImageNet21KP-min-images",
                 "31", "--val-per-class=5", "--samples-per-shard", "200", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_ctrl_c_while_loading_is_one_line(tmp_path):
    # SIGINT as soon as the package starts loading (its import is where the first second goes)
    code = ("import signal, os, sys, builtins, luigi.cmdline as c\n"
            "real = builtins.__import__\n"
            "def hook(name, *args, **kwargs):\n"
            "    if name == 'pipeline.tasks':\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = hook\n"
            "c.luigi_run(['--module', 'pipeline', 'BuildImageNet21KP', '--help'])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip() == "error: interrupted while loading; nothing was started"


def test_a_summary_piped_into_head_ends_quietly(archive, tmp_path):
    out = tmp_path / "out"
    assert luigi("--archive", str(archive), "--output-dir", str(out), *DEMO, cwd=tmp_path).returncode == 0
    command = " ".join([sys.executable, "-m", "luigi", "--module", "pipeline", "BuildImageNet21KP",
                        "--local-scheduler", "--archive", str(archive), "--output-dir", str(out), *DEMO])
    for _ in range(3):  # the reader may leave before or after the summary is written
        proc = subprocess.run(["bash", "-c", f"set -o pipefail; {command} | head -c 1"], cwd=tmp_path,
                              env=clean_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
