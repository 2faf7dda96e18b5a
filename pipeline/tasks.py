"""The Luigi DAG: thin tasks over the pure functions of the stage modules.

    BuildImageNet21KP ─ WriteTables ─┬─ WriteShards × shard_tasks ─┬─ PlanDataset ─┬─ ConvertRange × convert_tasks   (tar, tars-dir, folders-dir)
                                     │                             │               │   or ConvertGzip                (tar.gz)
                                     │                             │               └─ ReadTaxonomy
                                     │                             └─ ClaimOutputDir
                                     └─ (the plan and the parts)

The DAG is static (a known task list, no dynamic dependencies), so plain workers on any host pick
up any task through ``luigid``. To size it, the class containers are listed when the DAG is
built (one 512-byte ``pread`` per outer member of a fall11 tar, a directory listing otherwise),
once: the listing is cached in the work dir. Every task has work to do: ``convert_tasks`` never
exceeds the number of containers, ``shard_tasks`` is sized from the archive's bytes.

Work files live under ``work_dir`` in folders named by a hash of what they depend on (archive
identity; then the convert parameters; then the planning parameters), so a rerun with other
values never mixes old and new files. ``output_dir`` records its parameters in ``_params.json``
and refuses a build with different ones (unless the claiming build produced nothing).
"""
from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import logging
import math
import os
from functools import cached_property
from pathlib import Path

import luigi
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hierarchy.atomic import atomic_write_text, remove_stale_temp_files, remove_stale_temp_files_in
from pipeline import convert, dataset_format, preflight, tables
from pipeline.archive import Container, detect_layout, list_containers
from pipeline.convert import VAL_RULES, ConvertSettings
from pipeline.crashpoints import crash_point
from pipeline.errors import ArchiveError, NothingToBuild, ParameterError, PipelineError, record_failure
from pipeline.luigi_config import apply_defaults
from pipeline.members import REJECT_SCHEMA
from pipeline.outputs import write_parquet
from pipeline.pil_build import describe_pil_build
from pipeline.plan import kept_wnids, plan_samples, shard_counts, shard_sizes
from pipeline.progress import TaskProgress
from pipeline.release import ReleaseFolderJob
from pipeline.shard_writer import shard_range, write_shards, write_summary

# pyarrow imports pandas, when it is installed, the first time it builds a table (~0.2 s): done
# here, in the process that forks Luigi's task processes, so that no task pays for it again.
try:
    import pandas  # noqa: E402,F401
except ImportError:
    pass

apply_defaults()  # the package's Luigi defaults, under any luigi.cfg, before Luigi reads them
logger = logging.getLogger("luigi-interface")
PIL_BUILD = describe_pil_build()  # logged by the tasks that make images

CONTAINER_SCHEMA = pa.schema([("name", pa.string()), ("wnid", pa.string()), ("source", pa.string()),
                              ("offset", pa.int64()), ("size", pa.int64()), ("kind", pa.string()),
                              ("weight", pa.int64()), ("split", pa.string())])
GZ_LAYOUTS = ("tar.gz", "released.tar.gz")  # one stream: one convert task
RELEASED_LAYOUTS = ("released", "released.tar.gz")
#: Auto task counts: about this many raw bytes per convert task, at least MIN_CONVERT_TASKS tasks
#: (never more than there are containers), at most MAX_CONVERT_TASKS.
CONVERT_TASK_BYTES = 1 << 30
MIN_CONVERT_TASKS, MAX_CONVERT_TASKS = 32, 2048
#: Shard tasks: a conservative (large) raw size per image, so the estimate of the shard count errs
#: low and no shard task goes empty; about SHARDS_PER_TASK shards each.
RAW_BYTES_PER_IMAGE_HIGH = 150_000
RAW_BYTES_PER_IMAGE_TYPICAL = 85_000  # fall11: 1.2 TB / 14.2 M images
RELEASED_BYTES_PER_IMAGE = 25_000  # the processed download: 224² JPEGs
SHARDS_PER_TASK = 2

_listings: dict[str, list[Container]] = {}  # listing path -> containers (read once per process)
_chunks: dict[tuple, list[tuple[int, int]]] = {}
_layouts: dict[str, str] = {}


def _hash(*values) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def shards_present(output_dir, names) -> bool:
    """True when every shard file in ``names`` exists (one stat per shard, none per image)."""
    return all((Path(output_dir) / name).is_file() for name in names)


def split_evenly(weights: list[int], n: int) -> list[tuple[int, int]]:
    """``n`` contiguous, non-empty ``[lo, hi)`` ranges over ``weights`` with about equal sums
    (``n`` is capped at ``len(weights)``)."""
    n = max(1, min(n, len(weights)))
    cum = list(itertools.accumulate(weights))
    total = cum[-1] if cum else 0
    cuts, prev = [], 0
    for k in range(1, n):
        target = total * k / n
        i = bisect.bisect_left(cum, target) + 1  # the first end whose sum reaches the target
        if i > 1 and target - cum[i - 2] < cum[i - 1] - target:
            i -= 1  # ending one item earlier is closer to the target
        i = min(max(i, prev + 1), len(weights) - (n - k))  # every range keeps at least one item
        cuts.append(i)
        prev = i
    bounds = [0, *cuts, len(weights)]
    return list(zip(bounds[:-1], bounds[1:]))


class DatasetTask(luigi.Task):
    """Parameters shared by every task; ``BuildImageNet21KP`` passes its own values down."""

    archive = luigi.Parameter(description="raw archive: fall11 .tar, winter21 .tar.gz, or a directory "
                                          "of class tars / class folders (read in place)")
    output_dir = luigi.Parameter(description="where shards and tables are written")
    work_dir = luigi.Parameter(default="", description="intermediate files (default: OUTPUT_DIR/_work)")
    min_images = luigi.IntParameter(default=501, description="keep classes with at least this many images")
    val_per_class = luigi.IntParameter(default=50, description="held-out validation images per class")
    val_rule = luigi.ChoiceParameter(choices=VAL_RULES, default="first",
                                     description="first: first N by member name, bytewise; first_en_us: first N "
                                                 "as `ls` lists them under en_US.UTF-8; random: seeded draw "
                                                 "(raw layouts; the released layout keeps its own split)")
    seed = luigi.IntParameter(default=0, description="seed of the train shuffle (and of val_rule=random)")
    image_size = luigi.IntParameter(default=224, description="squish-resize target (square)")
    jpeg_quality = luigi.IntParameter(default=95, description="JPEG quality of the resized images")
    samples_per_shard = luigi.IntParameter(default=5000, description="samples per WebDataset shard")
    tree_source = luigi.ChoiceParameter(choices=("auto", "wordnet", "is_a"), default="auto",
                                        description="is-a relation of the semantic tree (auto: is_a when "
                                                    "--is-a-path is given, else wordnet)")
    is_a_path = luigi.Parameter(default="", description="ImageNet's wordnet.is_a.txt (tree_source=is_a)")
    words_path = luigi.Parameter(default="", description="ImageNet's words.txt for class names (optional)")
    convert_tasks = luigi.IntParameter(default=0, description="tasks reading the archive (0: about one per "
                                                              "GiB, at least 32, at most one per class)")
    shard_tasks = luigi.IntParameter(default=0, description="tasks writing the shards (0: from the archive size)")
    gzip_processes = luigi.IntParameter(default=0, significant=False,
                                        description=".tar.gz: processes converting images (0: one per core)")
    gzip_part_mb = luigi.IntParameter(default=1024, significant=False,
                                      description=".tar.gz: MB of archive a converter process takes into one "
                                                  "part (its JPEGs are held in memory until written)")

    # ---- the archive and its listing --------------------------------------------------------
    @property
    def work_root(self) -> Path:
        return Path(self.work_dir or Path(self.output_dir) / "_work")

    @property
    def layout(self) -> str:
        if self.archive not in _layouts:  # every task asks: look once per process
            _layouts[self.archive] = detect_layout(self.archive)
        return _layouts[self.archive]

    @cached_property
    def archive_work_dir(self) -> Path:
        try:
            st = os.stat(self.archive)
        except OSError as exc:
            raise ArchiveError(f"archive not found or unreadable: {self.archive} ({exc.strerror})") from None
        return self.work_root / f"archive-{_hash(os.path.abspath(self.archive), st.st_size, st.st_mtime_ns)}"

    @property
    def containers(self) -> list[Container]:
        """The class containers (tar and folder layouts), listed once and cached in the work dir."""
        path = self.archive_work_dir / "containers.parquet"
        key = str(path)
        if key not in _listings:
            if path.is_file():
                rows = pq.read_table(path).to_pylist()
            else:
                rows = [c.__dict__ for c in list_containers(self.archive, self.layout)]
                write_parquet(pa.Table.from_pylist(rows, schema=CONTAINER_SCHEMA), path)
            _listings[key] = [Container(**r) for r in rows]
        return _listings[key]

    def raw_bytes(self) -> int:
        """The archive's size; for class folders, their file counts times a typical image size."""
        if self.layout == "folders-dir":
            return sum(c.weight for c in self.containers) * RAW_BYTES_PER_IMAGE_TYPICAL
        if self.layout == "released":
            return sum(c.weight for c in self.containers) * RELEASED_BYTES_PER_IMAGE
        if self.layout == "tars-dir":
            return sum(c.size for c in self.containers)
        return os.path.getsize(self.archive)

    @property
    def tree(self) -> str:
        """The tree source in force (``tree_source=auto`` resolved)."""
        if self.tree_source == "auto":
            return "is_a" if self.is_a_path else "wordnet"
        return self.tree_source

    @property
    def n_convert_tasks(self) -> int:
        if self.layout in GZ_LAYOUTS:
            return 1
        wanted = self.convert_tasks or max(MIN_CONVERT_TASKS, math.ceil(self.raw_bytes() / CONVERT_TASK_BYTES))
        return max(1, min(wanted, len(self.containers), MAX_CONVERT_TASKS))

    @property
    def n_shard_tasks(self) -> int:
        if self.shard_tasks > 0:
            return self.shard_tasks
        estimated_shards = self.raw_bytes() / (RAW_BYTES_PER_IMAGE_HIGH * self.samples_per_shard)
        return max(1, min(MAX_CONVERT_TASKS, round(estimated_shards / SHARDS_PER_TASK)))

    # ---- work folders -------------------------------------------------------------------------
    def convert_values(self) -> dict:
        return dict(min_images=self.min_images, val_per_class=self.val_per_class, val_rule=self.val_rule,
                    seed=self.seed, tree_source=self.tree, is_a_path=_file_identity(self.is_a_path),
                    image_size=self.image_size, jpeg_quality=self.jpeg_quality)

    def output_values(self) -> dict:
        return dict(self.convert_values(), samples_per_shard=self.samples_per_shard,
                    words_path=_file_identity(self.words_path))

    @property
    def settings(self) -> ConvertSettings:
        return ConvertSettings(image_size=self.image_size, jpeg_quality=self.jpeg_quality, min_images=self.min_images,
                               val_per_class=self.val_per_class, val_rule=self.val_rule, seed=self.seed)

    # (named by the task-count parameters as given, "auto" resolving the same way on every host,
    # so checking a task's output never needs the listing)
    @property
    def parts_dir(self) -> Path:
        runs = "gz" if self.layout in GZ_LAYOUTS else (self.convert_tasks or "auto")
        return self.archive_work_dir / f"convert-{_hash(self.convert_values())}" / f"parts-{runs}"

    @property
    def plan_dir(self) -> Path:
        return self.parts_dir / f"plan-{_hash(self.samples_per_shard, _file_identity(self.words_path))}"

    @property
    def shards_work_dir(self) -> Path:
        return self.plan_dir / f"shards-{self.shard_tasks or 'auto'}"

    def chunk_ranges(self) -> list[tuple[int, int]]:
        """The containers of each convert task (cached: every task of the DAG asks)."""
        key = (str(self.archive_work_dir), self.n_convert_tasks)
        if key not in _chunks:
            _chunks[key] = split_evenly([c.weight for c in self.containers], self.n_convert_tasks)
        return _chunks[key]

    def convert_requirements(self) -> list[luigi.Task]:
        if self.layout in GZ_LAYOUTS:
            return [self.clone(ConvertGzip)]
        return [self.clone(ConvertRange, chunk=i) for i in range(self.n_convert_tasks)]

    def convert_summaries(self) -> list[dict]:
        """The summaries of every part, as the convert tasks recorded them."""
        return [s for t in self.convert_requirements() for s in json.loads(Path(t.output().path).read_text())["summaries"]]

    def part_bases(self) -> list[str]:
        """Every part of the build, in order (the parts of each convert task)."""
        out = []
        for task in self.convert_requirements():
            out += json.loads(Path(task.output().path).read_text())["parts"]
        return out

    def placeable(self):
        from hierarchy import placeable

        return placeable(self.tree, self.is_a_path or None)

    def progress(self, total: int, what: str) -> TaskProgress:
        return TaskProgress(self, total, what)

    def on_failure(self, exception):
        """Known failures (:mod:`pipeline.errors`) are one line for the command to report, not a traceback."""
        return record_failure(exception) or super().on_failure(exception)

    def remove_stale_outputs(self) -> None:
        """Delete the temp files a killed run of this task left beside its outputs (other tasks'
        files in the same folders are left alone)."""
        for target in luigi.task.flatten(self.output()):
            remove_stale_temp_files(target.path)

    def status(self, message: str) -> None:
        """A status line in the scheduler's UI (no-op when not run by a worker)."""
        if callable(self.set_status_message):
            self.set_status_message(message)


def _file_identity(path: str):
    if not path:
        return None
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


class ConvertRange(DatasetTask):
    """Stage 1: read a contiguous run of class containers front to back and convert it (one part)."""

    chunk = luigi.IntParameter()
    resources = {"archive_io": 1}

    @property
    def my_containers(self) -> list[Container]:
        lo, hi = self.chunk_ranges()[self.chunk]
        return self.containers[lo:hi]

    @property
    def priority(self) -> int:  # biggest first, so the last tasks to finish are small ones
        return self.work_weight() >> 10

    def work_weight(self) -> int:
        """Raw bytes (tar layouts) or files (class folders) this task reads."""
        return sum(c.weight for c in self.my_containers)

    def images_read(self) -> int:
        """Archive entries the finished task read."""
        return sum(s["entries"] for s in json.loads(Path(self.output().path).read_text())["summaries"])

    @property
    def base(self) -> Path:
        return self.parts_dir / f"part-{self.chunk:05d}"

    def output(self):
        return luigi.LocalTarget(str(self.parts_dir / f"convert-{self.chunk:05d}.json"))

    def run(self):
        self.remove_stale_outputs()
        containers = self.my_containers
        layout_reader = {"tar": convert.convert_tar_range, "tars-dir": convert.convert_tar_files,
                         "folders-dir": convert.convert_folders,
                         "released": functools.partial(convert.convert_folders, job_class=ReleaseFolderJob)}[self.layout]
        logger.info("convert %d/%d with %s", self.chunk + 1, self.n_convert_tasks, PIL_BUILD)
        by_folder = self.layout in ("folders-dir", "released")
        total = len(containers) if by_folder else sum(c.size for c in containers)
        bar = self.progress(total, f"convert {self.chunk + 1}/{self.n_convert_tasks}")
        part = layout_reader(self.archive, containers, self.settings, self.placeable(),
                             progress=lambda done: bar.update(done))
        summary = part.write(self.base)
        bar.close(f"{summary['samples']} samples from {len(containers)} containers", images=summary["entries"])
        atomic_write_text(self.output().path, json.dumps({"parts": [str(self.base)], "summaries": [summary]}) + "\n")


class ConvertGzip(DatasetTask):
    """Stage 1 for winter21 ``.tar.gz``: one pass inflating and converting, on all the host's cores."""

    resources = {"archive_io": 1}

    def output(self):
        return luigi.LocalTarget(str(self.parts_dir / "convert-gz.json"))

    def work_weight(self) -> int:
        return os.path.getsize(self.archive)

    images_read = ConvertRange.images_read

    def run(self):
        self.remove_stale_outputs()
        from pipeline.gzip_convert import convert_gzip
        from pipeline.release import convert_release_gzip

        cores = os.cpu_count() or 1
        logger.info("convert .tar.gz with %s", PIL_BUILD)
        total = os.path.getsize(self.archive)  # about the inflated size: JPEGs hardly compress
        bar = self.progress(total, "convert .tar.gz")
        progress = lambda done: bar.update(min(done, total))  # noqa: E731
        if self.layout == "released.tar.gz":  # mostly byte copies: one process keeps up with the inflate
            bases = convert_release_gzip(self.archive, self.parts_dir, self.settings, self.placeable(),
                                         part_bytes=self.gzip_part_mb << 20, progress=progress)
        else:
            bases = convert_gzip(self.archive, self.parts_dir, self.settings, self.placeable(),
                                 processes=self.gzip_processes or cores, inflate_threads=max(1, cores // 8),
                                 part_bytes=self.gzip_part_mb << 20, progress=progress)
        summaries = [json.loads(Path(f"{b}.json").read_text()) for b in bases]
        bar.close(f"{sum(s['samples'] for s in summaries)} samples in {len(bases)} parts",
                  images=sum(s["entries"] for s in summaries))
        atomic_write_text(self.output().path, json.dumps({"parts": bases, "summaries": summaries}) + "\n")


class ReadTaxonomy(DatasetTask):
    """The is-a parents and names of every class of the archive, read beside the conversion so
    that the tree is a moment's work once the kept classes are known."""

    priority = 1 << 40  # start at once: it runs beside the convert tasks

    def requires(self):
        return self.convert_requirements() if self.layout in GZ_LAYOUTS else []

    def output(self):
        source = [self.tree, _file_identity(self.is_a_path), _file_identity(self.words_path)]
        return luigi.LocalTarget(str(self.archive_work_dir / f"taxonomy-{_hash(source)}.json"))

    def candidates(self) -> list[str]:
        """Every class of the archive (from the listing, or from the parts of a .tar.gz)."""
        if self.layout in GZ_LAYOUTS:
            return sorted({w for b in self.part_bases()
                           for w in pq.read_table(f"{b}.classes.parquet", columns=["wnid"]).column("wnid").to_pylist()})
        return sorted({c.wnid for c in self.containers if c.wnid and c.kind in ("tar", "folder")})

    def run(self):
        self.remove_stale_outputs()
        from hierarchy import parent_mapping
        from hierarchy.names import class_names, read_words

        is_placeable = self.placeable()
        wnids = [w for w in self.candidates() if is_placeable(w)]
        parents = parent_mapping(wnids, self.tree, self.is_a_path or None) if wnids else {}
        if self.words_path:  # a class the words file lacks matters only if it is kept (see PlanDataset)
            wanted = set(wnids)
            names = {w: n for w, n in read_words(self.words_path).items() if w in wanted}
        else:
            names = class_names(wnids)
        atomic_write_text(self.output().path, json.dumps({"parents": parents, "names": names}, sort_keys=True))


class PlanDataset(DatasetTask):
    """Stage 2: the class list and semantic tree, and the sample → shard plan (``plan.parquet``)."""

    def requires(self):
        return {"convert": self.convert_requirements(), "taxonomy": self.clone(ReadTaxonomy)}

    def output(self):
        return {"tree": luigi.LocalTarget(str(self.plan_dir / dataset_format.TREE_FILE)),
                "plan": luigi.LocalTarget(str(self.plan_dir / "plan.parquet"))}

    def run(self):
        self.remove_stale_outputs()
        from hierarchy import SemanticTree

        bases = self.part_bases()
        classes = pa.concat_tables([pq.read_table(f"{b}.classes.parquet") for b in bases])
        class_list = kept_wnids(classes)
        if not class_list:
            most = pc.max(classes.column("n_images")).as_py() or 0
            raise NothingToBuild(f"no class of {self.archive} has at least {self.min_images} images (--min-images; "
                                 f"the largest has {most}): nothing to build; lower --min-images (and "
                                 "--val-per-class below it), or check that this is the right archive")
        taxonomy = json.loads(Path(self.input()["taxonomy"].path).read_text())
        unnamed = [w for w in class_list if w not in taxonomy["names"]]
        if unnamed:
            raise ParameterError(f"--words-path {self.words_path} has no entry for {len(unnamed)} kept class "
                                 f"id(s): {', '.join(unnamed[:20])}; give a words.txt that covers them, or none")
        tree = SemanticTree.from_parents(class_list, taxonomy["parents"],
                                         {w: taxonomy["names"][w] for w in class_list}, self.tree)
        tree.save(self.output()["tree"].path)
        samples = pa.concat_tables([_with_part(pq.read_table(f"{b}.samples.parquet"), k) for k, b in enumerate(bases)])
        if self.layout == "released.tar.gz":  # val images of classes without a train folder (rejected)
            samples = samples.filter(pc.is_in(samples.column("wnid"), value_set=pa.array(class_list)))
        plan = plan_samples(samples, class_list, self.samples_per_shard)
        path = Path(self.output()["plan"].path)
        remove_stale_temp_files(path.with_suffix(".shards.json"))
        atomic_write_text(path.with_suffix(".shards.json"), json.dumps(shard_counts(plan), sort_keys=True))
        # the plan last (it marks the stage done); one row group per shard, for the shard tasks
        write_parquet(plan, path, row_groups=shard_sizes(plan))
        self.status(f"{len(class_list)} classes, {plan.num_rows} samples planned")


def _with_part(samples: pa.Table, part: int) -> pa.Table:
    return samples.append_column("part", pa.array([part] * samples.num_rows, pa.int64()))


class ClaimOutputDir(DatasetTask):
    """Records the output-changing parameters in ``OUTPUT_DIR/_params.json``; refuses others."""

    def output(self):
        return luigi.LocalTarget(str(Path(self.output_dir) / preflight.PARAMS_FILE))

    def expected(self) -> dict:
        return dict(self.output_values(), archive=os.path.abspath(self.archive))

    def complete(self):
        # False for a claim by a build that produced nothing: run() claims the dir again
        return preflight.claim_matches(self.output_dir, self.expected())

    def run(self):
        self.remove_stale_outputs()
        atomic_write_text(self.output().path, json.dumps(self.expected(), indent=1, sort_keys=True) + "\n")


class WriteShards(DatasetTask):
    """Stage 3: assemble a contiguous range of shards from the parts (bytes only, no decoding)."""

    group = luigi.IntParameter()

    def requires(self):
        return {"plan": self.clone(PlanDataset), "claim": self.clone(ClaimOutputDir)}

    def output(self):
        return luigi.LocalTarget(str(self.shards_work_dir / f"group-{self.group:05d}.json"))

    def complete(self):
        """Done when the summary exists and so do its shards (a deleted shard is rebuilt)."""
        path = Path(self.output().path)
        if not path.is_file():
            return False
        names = [s["name"] for s in json.loads(path.read_text())["shards"]]
        return shards_present(self.output_dir, names)

    def run(self):
        self.remove_stale_outputs()
        from hierarchy import SemanticTree

        tree = SemanticTree.load(self.input()["plan"]["tree"].path)
        plan_path = Path(self.input()["plan"]["plan"].path)
        n_tasks = self.n_shard_tasks
        mine = shard_range(json.loads(plan_path.with_suffix(".shards.json").read_text()), self.group, n_tasks)
        bar = self.progress(len(mine), f"shards {self.group + 1}/{n_tasks}")
        summary = write_shards(plan_path, self.part_bases(), self.group, n_tasks, Path(self.output_dir),
                               self.shards_work_dir, tree.class_tree_list, progress=bar.update)
        bar.close(f"{len(summary['shards'])} shards")
        write_summary(Path(self.output().path), summary)


class WriteTables(DatasetTask):
    """Stage 4: labels, classes, rejects, class counts and the tree, in the output dir."""

    def requires(self):
        return {"shards": [self.clone(WriteShards, group=g) for g in range(self.n_shard_tasks)],
                "plan": self.clone(PlanDataset), "convert": self.convert_requirements()}

    def output(self):
        out = Path(self.output_dir)
        targets = {name: luigi.LocalTarget(str(out / name)) for name in dataset_format.TABLE_FILES}
        targets["tree"] = luigi.LocalTarget(str(out / dataset_format.TREE_FILE))
        targets["accounting"] = luigi.LocalTarget(str(self.shards_work_dir / "accounting.json"))
        return targets

    def complete(self):
        if not super().complete():
            return False
        accounting = json.loads(Path(self.output()["accounting"].path).read_text())
        return shards_present(self.output_dir, accounting["shard_lengths"])

    def run(self):
        self.remove_stale_outputs()
        remove_stale_temp_files_in(self.output_dir)  # left by a killed run of this task
        inp = self.input()
        bases = self.part_bases()
        entries = sum(s["entries"] for s in self.convert_summaries())
        built, accounting = tables.build_tables(
            plan=pq.read_table(inp["plan"]["plan"].path), tree_path=inp["plan"]["tree"].path,
            class_counts=pa.concat_tables([pq.read_table(f"{b}.classes.parquet") for b in bases]),
            rejects=pa.concat_tables([pq.read_table(f"{b}.rejects.parquet").cast(REJECT_SCHEMA) for b in bases]),
            shard_summaries=[json.loads(Path(t.path).read_text()) for t in inp["shards"]],
            archive_entries=entries)
        for name, table in built.items():
            write_parquet(table, self.output()[name].path)
            crash_point("tables")
        atomic_write_text(self.output()["tree"].path, Path(inp["plan"]["tree"].path).read_text())
        atomic_write_text(self.output()["accounting"].path, json.dumps(accounting, indent=1, sort_keys=True) + "\n")


class BuildImageNet21KP(DatasetTask):
    """Build ImageNet-21K-P from the raw archive: shards, tables, ``_info.json``, dataset card.

    Creating the task checks the build before any work (:mod:`pipeline.preflight`): parameter
    values, the archive (its layout, and its class listing), the output dir's claim, WordNet.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        preflight.check_parameters(self.param_kwargs)
        if self.layout not in GZ_LAYOUTS:
            self.containers  # noqa: B018  (lists the archive: a damaged outer tar is refused here)
        preflight.claim_matches(self.output_dir, self.clone(ClaimOutputDir).expected())
        preflight.check_wordnet()

    def requires(self):
        return self.clone(WriteTables)

    def complete(self):
        # a finished output dir built with other parameters is an error, not "done";
        # a shard deleted after the build (e.g. a damaged copy) makes the build incomplete again
        return self.clone(ClaimOutputDir).complete() and self.clone(WriteTables).complete() and super().complete()

    def output(self):
        out = Path(self.output_dir)
        return {"stats": luigi.LocalTarget(str(out / dataset_format.STATS_FILE)),
                "card": luigi.LocalTarget(str(out / dataset_format.CARD_FILE)),
                "info": luigi.LocalTarget(str(out / dataset_format.INFO_FILE))}

    def run(self):
        self.remove_stale_outputs()
        from hierarchy import SemanticTree

        remove_stale_temp_files_in(self.output_dir)
        inp = self.input()
        accounting = json.loads(Path(inp["accounting"].path).read_text())
        tree = SemanticTree.load(inp["tree"].path)
        tree_summary = dict(level_counts=list(tree.level_counts), softmax_levels=list(tree.softmax_levels),
                            normalization_factors=[round(f, 4) for f in tree.normalization_factors])
        params = dict(self.output_values(), archive=os.path.abspath(self.archive), layout=self.layout)
        stats = tables.build_stats(pq.read_table(inp["classes.parquet"].path),
                                   pq.read_table(inp["class_counts.parquet"].path),
                                   pq.read_table(inp["rejects.parquet"].path), accounting, tree_summary, params)
        if not stats["accounting"]["balanced"]:
            raise PipelineError(f"accounting does not add up: {stats['accounting']}")
        if self.layout in RELEASED_LAYOUTS:
            from pipeline.release import release_report

            bases = self.part_bases()
            samples = pa.concat_tables([pq.read_table(f"{b}.samples.parquet", columns=["wnid", "member", "split"])
                                        for b in bases])
            stats["release"] = release_report(samples, tree.class_list, self.convert_summaries(), self.tree)
        info = dataset_format.info_json(accounting["shard_lengths"])
        atomic_write_text(self.output()["stats"].path, json.dumps(stats, indent=1, sort_keys=True) + "\n")
        atomic_write_text(self.output()["card"].path, tables.dataset_card(stats))
        atomic_write_text(self.output()["info"].path, json.dumps(info, indent=1, sort_keys=True) + "\n")
        self.status(f"{stats['samples']['train']} train + {stats['samples']['validation']} "
                    f"validation samples in {stats['num_classes']} classes")


from pipeline import cli  # noqa: E402  (Luigi's command line, made to report this build's failures)

cli.install()
