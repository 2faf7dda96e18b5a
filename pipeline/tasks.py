"""The Luigi DAG: the tasks, each ``run()`` a call into a stage function.

    BuildImageNet21KP ─ WriteTables ─┬─ WriteShards × shard tasks ─┬─ PlanDataset ─┬─ ConvertRange × convert tasks   (tar, tars-dir, folders, released)
                                     │                             │               │   or ConvertGzip                (.tar.gz)
                                     │                             │               └─ ReadTaxonomy
                                     │                             └─ ClaimOutputDir
                                     └─ (the plan and the parts)

The DAG is static (a known task list, no dynamic dependencies), so plain workers on any host pick
up any task through ``luigid``. Its size comes from the archive's class listing
(:mod:`pipeline.listing`, :mod:`pipeline.task_sizing`); work files live in folders named by a
hash of their inputs (:mod:`pipeline.work_dirs`). ``output_dir`` records its parameters in
``_params.json`` and refuses a build with different ones (unless the claiming build produced
nothing).
"""
from __future__ import annotations

import json
import logging
import os
from functools import cached_property
from pathlib import Path

import luigi

from hierarchy.atomic import atomic_write_text, remove_stale_temp_files, remove_stale_temp_files_in
from pipeline import checksums, dataset_format, listing, preflight, task_sizing, work_dirs
from pipeline.archive import Container, layout_of
from pipeline.archive_layout import ArchiveLayout
from pipeline.assemble import read_summary, shard_range, shards_intact, write_shards, write_summary
from pipeline.contamination import VAL_MOVES
from pipeline.convert import VAL_RULES, ConvertSettings
from pipeline.near_duplicates import ALGORITHM, ALGORITHM_VERSION, DEFAULT_THRESHOLD
from pipeline.errors import record_failure
from pipeline.pil_build import describe_pil_build
from pipeline.progress import TaskProgress, Work

logger = logging.getLogger("luigi-interface")
#: Parameters an output dir's claim may lack (written before they existed): their defaults.
ADDED_LATER = {"eval_sets": [], "near_dup_distance": DEFAULT_THRESHOLD, "val_near_duplicates": "report"}


class DatasetTask(luigi.Task):
    """Parameters shared by every task; ``BuildImageNet21KP`` passes its own values down."""

    archive = luigi.Parameter(description="the archive, read in place: fall11 .tar, winter21 .tar.gz, a directory "
                                          "of class tars or class folders, or the processed ImageNet-21K-P "
                                          "download (imagenet21k_resized/ or its .tar.gz)")
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
    eval_sets = luigi.Parameter(default="", description="evaluation sets whose near-duplicates are left out of "
                                                        "the build (rejects.parquet), comma-separated: folders or "
                                                        "tars of images, or hash files (python -m pipeline "
                                                        "eval-hashes)")
    near_dup_distance = luigi.IntParameter(default=DEFAULT_THRESHOLD,
                                           description="largest fingerprint distance (bits) that is a near-duplicate")
    val_near_duplicates = luigi.ChoiceParameter(choices=VAL_MOVES, default="report",
                                                description="validation images with a near-duplicate in train: "
                                                            "report them (stats.json, val_near_duplicates.parquet), "
                                                            "or move them out of validation, replaced by the next "
                                                            "eligible image under the val rule")

    # ---- the archive and its listing --------------------------------------------------------
    @property
    def work_root(self) -> Path:
        return Path(self.work_dir or Path(self.output_dir) / "_work")

    @property
    def archive_layout(self) -> ArchiveLayout:
        return layout_of(self.archive)

    @cached_property
    def archive_work_dir(self) -> Path:
        return work_dirs.archive_work_dir(self.work_root, self.archive)

    @property
    def containers(self) -> list[Container]:
        """The class containers (tar and folder layouts), listed once and cached in the work dir."""
        return list(listing.containers(self.archive, self.archive_layout.name, self.archive_work_dir))

    @property
    def resolved_tree_source(self) -> str:
        """``tree_source`` with ``auto`` resolved: ``is_a`` or ``wordnet``."""
        if self.tree_source == "auto":
            return "is_a" if self.is_a_path else "wordnet"
        return self.tree_source

    @property
    def n_convert_tasks(self) -> int:
        if self.archive_layout.one_stream:
            return 1
        containers = self.containers
        return task_sizing.convert_task_count(self.archive_layout.raw_bytes(self.archive, containers), len(containers),
                                              self.convert_tasks)

    @property
    def n_shard_tasks(self) -> int:
        if self.shard_tasks > 0:
            return self.shard_tasks
        containers = [] if self.archive_layout.in_one_file else self.containers
        return task_sizing.shard_task_count(self.archive_layout.raw_bytes(self.archive, containers), self.samples_per_shard)

    # ---- work folders -------------------------------------------------------------------------
    def convert_values(self) -> dict:
        return dict(min_images=self.min_images, val_per_class=self.val_per_class, val_rule=self.val_rule,
                    seed=self.seed, tree_source=self.resolved_tree_source,
                    is_a_path=work_dirs.file_identity(self.is_a_path),
                    image_size=self.image_size, jpeg_quality=self.jpeg_quality,
                    fingerprint=f"{ALGORITHM}-{ALGORITHM_VERSION}", fingerprint_copies=self.fingerprint_copies)

    @property
    def fingerprint_copies(self) -> bool:
        """Whether images the processed download gives ready are decoded for their fingerprint
        (only to compare them with evaluation sets: every other image is decoded anyway)."""
        return self.archive_layout.released and bool(self.eval_sets)

    def eval_sources(self) -> list[str]:
        return [s.strip() for s in self.eval_sets.split(",") if s.strip()]

    def plan_values(self) -> dict:
        """What the plan depends on besides the parts."""
        return dict(eval_sets=[work_dirs.tree_identity(s) for s in self.eval_sources()],
                    near_dup_distance=self.near_dup_distance, val_near_duplicates=self.val_near_duplicates)

    def output_values(self) -> dict:
        """The parameters an output dir records (``_params.json``, ``stats.json``): those the
        layout ignores are listed as ``not_applicable`` instead of given a value."""
        values = dict(self.convert_values(), samples_per_shard=self.samples_per_shard,
                      words_path=work_dirs.file_identity(self.words_path), **self.plan_values())
        del values["fingerprint"], values["fingerprint_copies"]  # how parts are made, not what the dataset is
        ignored = self.archive_layout.ignored_parameters
        if ignored:
            values = {k: v for k, v in values.items() if k not in ignored}
            values["not_applicable"] = list(ignored)
        return values

    @property
    def settings(self) -> ConvertSettings:
        return ConvertSettings(image_size=self.image_size, jpeg_quality=self.jpeg_quality, min_images=self.min_images,
                               val_per_class=self.val_per_class, val_rule=self.val_rule, seed=self.seed,
                               fingerprint_copies=self.fingerprint_copies)

    @property
    def parts_dir(self) -> Path:
        return work_dirs.parts_dir(self.archive_work_dir, self.convert_values(),
                                   None if self.archive_layout.one_stream else self.convert_tasks)

    @property
    def plan_dir(self) -> Path:
        return work_dirs.plan_dir(self.parts_dir, self.samples_per_shard, self.words_path, self.plan_values())

    @property
    def shards_work_dir(self) -> Path:
        return work_dirs.shards_work_dir(self.plan_dir, self.shard_tasks)

    def convert_requirements(self) -> list[luigi.Task]:
        if self.archive_layout.one_stream:
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

        return placeable(self.resolved_tree_source, self.is_a_path or None)

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


class ConvertRange(DatasetTask):
    """Stage 1: read a contiguous run of class containers front to back and convert it (one part)."""

    chunk = luigi.IntParameter()
    resources = {"archive_io": 1}

    @property
    def my_containers(self) -> list[Container]:
        lo, hi = listing.convert_ranges(self.archive, self.archive_layout.name, self.archive_work_dir,
                                        self.n_convert_tasks)[self.chunk]
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
        logger.info("convert %d/%d with %s", self.chunk + 1, self.n_convert_tasks, describe_pil_build())
        total = len(containers) if self.archive_layout.weighed_in_files else sum(c.size for c in containers)
        bar = self.progress(total, f"convert {self.chunk + 1}/{self.n_convert_tasks}")
        part = self.archive_layout.converter()(self.archive, containers, self.settings, self.placeable(),
                                       progress=lambda done: bar.update(done))
        summary = part.write(self.base)
        bar.close(f"{summary['samples']} samples from {len(containers)} containers", images=summary["entries"])
        atomic_write_text(self.output().path, json.dumps({"parts": [str(self.base)], "summaries": [summary]}) + "\n")


class ConvertGzip(DatasetTask):
    """Stage 1 for a ``.tar.gz``: one pass inflating and converting, on all the host's cores."""

    resources = {"archive_io": 1}

    def output(self):
        return luigi.LocalTarget(str(self.parts_dir / "convert-gz.json"))

    def work_weight(self) -> int:
        return os.path.getsize(self.archive)

    images_read = ConvertRange.images_read

    def run(self):
        self.remove_stale_outputs()
        cores = os.cpu_count() or 1
        logger.info("convert .tar.gz with %s", describe_pil_build())
        total = os.path.getsize(self.archive)  # about the inflated size: JPEGs hardly compress
        bar = self.progress(total, "convert .tar.gz")
        # the processed download is mostly byte copies: one process keeps up with the inflate
        processes = dict(processes=self.gzip_processes or cores, inflate_threads=max(1, cores // 8)
                         ) if self.archive_layout.parallel_convert else {}
        bases = self.archive_layout.converter()(self.archive, self.parts_dir, self.settings, self.placeable(),
                                        part_bytes=self.gzip_part_mb << 20,
                                        progress=lambda done: bar.update(min(done, total)), **processes)
        summaries = [json.loads(Path(f"{b}.json").read_text()) for b in bases]
        bar.close(f"{sum(s['samples'] for s in summaries)} samples in {len(bases)} parts",
                  images=sum(s["entries"] for s in summaries))
        atomic_write_text(self.output().path, json.dumps({"parts": bases, "summaries": summaries}) + "\n")


class ReadTaxonomy(DatasetTask):
    """The is-a parents and names of every class of the archive (:mod:`pipeline.taxonomy`)."""

    priority = 1 << 40  # start at once: it runs beside the convert tasks

    def requires(self):
        return self.convert_requirements() if self.archive_layout.one_stream else []

    def output(self):
        return luigi.LocalTarget(str(work_dirs.taxonomy_file(self.archive_work_dir, self.resolved_tree_source,
                                                             self.is_a_path, self.words_path)))

    def candidates(self) -> list[str]:
        """Every class of the archive (from the listing, or from the parts of a .tar.gz)."""
        if self.archive_layout.one_stream:
            from pipeline.parts import read_parts

            return sorted(set(read_parts(self.part_bases(), "classes", columns=["wnid"]).column("wnid").to_pylist()))
        return sorted({c.wnid for c in self.containers if c.wnid and c.kind in ("tar", "folder")})

    def run(self):
        self.remove_stale_outputs()
        from pipeline.taxonomy import read_taxonomy

        taxonomy = read_taxonomy(self.candidates(), self.placeable(), self.resolved_tree_source, self.is_a_path,
                                 self.words_path)
        atomic_write_text(self.output().path, json.dumps(taxonomy, sort_keys=True))


class PlanDataset(DatasetTask):
    """Stage 2: the class list and semantic tree, and the sample → shard plan (:func:`pipeline.plan.plan_dataset`)."""

    def requires(self):
        needs = {"convert": self.convert_requirements(), "taxonomy": self.clone(ReadTaxonomy)}
        if self.eval_sources():
            needs["eval"] = self.clone(HashEvalSets)
        return needs

    def output(self):
        return {"tree": luigi.LocalTarget(str(self.plan_dir / dataset_format.TREE_FILE)),
                "plan": luigi.LocalTarget(str(self.plan_dir / "plan.parquet"))}

    def run(self):
        self.remove_stale_outputs()
        from pipeline.contamination import NearDuplicateRule
        from pipeline.plan import plan_dataset

        rule = NearDuplicateRule(self.near_dup_distance, self.val_near_duplicates, self.val_rule, self.seed,
                                 self.input()["eval"].path if "eval" in self.input() else None)
        n_classes, n_samples = plan_dataset(
            self.part_bases(), json.loads(Path(self.input()["taxonomy"].path).read_text()), self.resolved_tree_source,
            self.samples_per_shard, Path(self.output()["tree"].path), Path(self.output()["plan"].path),
            only_kept_samples=self.archive_layout.released and self.archive_layout.one_stream, words_path=self.words_path,
            why_none=f"no class of {self.archive} has at least {self.min_images} images (--min-images; the largest "
                     "has {most}): nothing to build; lower --min-images (and --val-per-class below it), or check "
                     "that this is the right archive", near_duplicates=rule)
        self.status(f"{n_classes} classes, {n_samples} samples planned")


class HashEvalSets(DatasetTask):
    """The fingerprints of the evaluation sets (``--eval-sets``), taken once: a table of set,
    image name and fingerprint (:mod:`pipeline.near_duplicates`), and the images that failed."""

    def output(self):
        return luigi.LocalTarget(str(work_dirs.eval_file(self.work_root, self.plan_values()["eval_sets"])))

    def run(self):
        self.remove_stale_outputs()
        from pipeline.contamination import hash_eval_sets

        hash_eval_sets(self.eval_sources(), Path(self.output().path))


class ClaimOutputDir(DatasetTask):
    """Records the output-changing parameters in ``OUTPUT_DIR/_params.json``; refuses others."""

    def output(self):
        return luigi.LocalTarget(str(Path(self.output_dir) / preflight.PARAMS_FILE))

    def expected(self) -> dict:
        return dict(self.output_values(), archive=os.path.abspath(self.archive))

    def complete(self):
        # False for a claim by a build that produced nothing: run() claims the dir again
        return preflight.claim_matches(self.output_dir, self.expected(), ADDED_LATER)

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
        """Done when the summary exists and its shards are on disk at their recorded sizes (a
        deleted or cut-short shard is written again; one stat per shard, no hashing)."""
        path = Path(self.output().path)
        if not path.is_file():
            return False
        return shards_intact(self.output_dir, json.loads(path.read_text())["shards"])

    def run(self):
        self.remove_stale_outputs()
        from hierarchy import SemanticTree

        tree = SemanticTree.load(self.input()["plan"]["tree"].path)
        plan_path = Path(self.input()["plan"]["plan"].path)
        n_tasks = self.n_shard_tasks
        mine = shard_range(json.loads(plan_path.with_suffix(".shards.json").read_text()), self.group, n_tasks)
        bar = self.progress(len(mine), f"shards {self.group + 1}/{n_tasks}")
        summary = write_shards(plan_path, self.part_bases(), self.group, n_tasks, Path(self.output_dir),
                               self.shards_work_dir, tree.class_tree_list, progress=bar.update,
                               recorded=read_summary(Path(self.output().path)))
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
        """Done when its outputs exist, and its files and the shards are at the sizes the
        accounting records (an accounting without them, from before checksums: run again)."""
        if not super().complete():
            return False
        files = json.loads(Path(self.output()["accounting"].path).read_text()).get("files")
        return files is not None and checksums.files_intact(self.output_dir,
                                                            {n: r["size"] for n, r in files.items()})

    def run(self):
        self.remove_stale_outputs()
        remove_stale_temp_files_in(self.output_dir)  # left by a killed run of this task
        from pipeline.tables import write_tables

        inp = self.input()
        write_tables(self.part_bases(), inp["plan"]["plan"].path, inp["plan"]["tree"].path,
                     [t.path for t in inp["shards"]], sum(s["entries"] for s in self.convert_summaries()),
                     Path(self.output_dir), Path(self.output()["accounting"].path))


class BuildImageNet21KP(DatasetTask):
    """Build ImageNet-21K-P from the raw archive: shards, tables, ``_info.json``, dataset card.

    Creating the task checks the build before any work (:mod:`pipeline.preflight`): parameter
    values, the archive (its layout, and its class listing), the output dir's claim, WordNet.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        preflight.check_parameters(self.param_kwargs)
        if not self.archive_layout.one_stream:
            self.containers  # noqa: B018  (lists the archive: a damaged outer tar is refused here)
        preflight.claim_matches(self.output_dir, self.clone(ClaimOutputDir).expected(), ADDED_LATER)
        preflight.check_wordnet()

    def requires(self):
        # the claim too: a _params.json deleted since (verify --remove-damaged) is written again
        return {"tables": self.clone(WriteTables), "claim": self.clone(ClaimOutputDir)}

    def complete(self):
        # a finished output dir built with other parameters is an error, not "done"; a shard
        # or any other output deleted or cut short after the build makes it incomplete again
        return (self.clone(ClaimOutputDir).complete() and self.clone(WriteTables).complete()
                and super().complete() and self.top_files_intact())

    def top_files_intact(self) -> bool:
        """The files directly in the output dir are at the sizes ``_sizes.json`` records (the
        shards are WriteTables' to check)."""
        try:
            sizes = checksums.read_sizes(self.output_dir)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        return checksums.files_intact(self.output_dir, {n: s for n, s in sizes.items() if "/" not in n})

    def output(self):
        out = Path(self.output_dir)
        return {"stats": luigi.LocalTarget(str(out / dataset_format.STATS_FILE)),
                "card": luigi.LocalTarget(str(out / dataset_format.CARD_FILE)),
                "info": luigi.LocalTarget(str(out / dataset_format.INFO_FILE)),
                "sizes": luigi.LocalTarget(str(out / dataset_format.SIZES_FILE)),
                "manifest": luigi.LocalTarget(str(out / dataset_format.MANIFEST_FILE))}

    def plan_of_work(self) -> tuple[list[Work], list[Work]]:
        """The build's convert tasks and shard tasks as :class:`pipeline.progress.Work` (size,
        and the images read by those already finished), for a progress bar."""
        converts = [Work(t.task_id, t.work_weight(), t.images_read() if t.complete() else None)
                    for t in self.convert_requirements()]
        shards = [self.clone(WriteShards, group=g) for g in range(self.n_shard_tasks)]
        return converts, [Work(t.task_id, 1, 1 if t.complete() else None) for t in shards]

    def run(self):
        self.remove_stale_outputs()
        remove_stale_temp_files_in(self.output_dir)
        from pipeline.tables import write_report

        release = self.release_report() if self.archive_layout.released else None
        params = dict(self.output_values(), archive=os.path.abspath(self.archive), layout=self.archive_layout.name)
        stats = write_report(Path(self.output_dir), Path(self.input()["tables"]["accounting"].path), params, release)
        self.status(f"{stats['samples']['train']} train + {stats['samples']['validation']} "
                    f"validation samples in {stats['num_classes']} classes")

    def release_report(self) -> tuple[dict, dict | None]:
        """The processed download's report and wnid lists (:func:`pipeline.release.release_report`)."""
        from hierarchy import SemanticTree
        from pipeline.parts import read_parts
        from pipeline.release import release_report

        samples = read_parts(self.part_bases(), "samples", columns=["wnid", "member", "split"])
        tree = SemanticTree.load(self.input()["tables"]["tree"].path)
        return release_report(samples, tree.class_list, self.convert_summaries(), self.resolved_tree_source)
