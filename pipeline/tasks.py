"""The Luigi DAG: thin tasks over the pure functions of the stage modules.

    BuildImageNet21KP ─ WriteTables ─ WriteShardGroup × shard_groups ─┬─ PlanShards ─┬─ CountClasses ─ IndexChunk × index_chunks ─ ListContainers [─ ExtractGzip]
                                                                       ├─ BuildTree ──┘
                                                                       └─ ClaimOutputDir

The DAG is static (known task list, no dynamic dependencies), so workers on any host can pick
up any task through ``luigid``. Work files live under ``work_dir`` in folders named by a hash of
what they depend on (archive identity; then the planning parameters; then the image
parameters), so a rerun with other values never mixes old and new files. ``output_dir`` records
its parameters in ``_params.json`` and refuses a build with different ones.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import cached_property
from pathlib import Path

import luigi
import pyarrow as pa
import pyarrow.parquet as pq

from hierarchy.atomic import atomic_write_bytes
from pipeline import classes as classes_mod
from pipeline import gzip_extract, tables
from pipeline.archive import ArchiveError, Container, detect_layout, list_containers
from pipeline.crashpoints import crash_point
from pipeline.index import REJECT_SCHEMA, index_containers
from pipeline.plan import VAL_RULES, plan_samples, shard_counts
from pipeline.progress import TaskProgress
from pipeline.shard_writer import write_shard_group
from pipeline.shards import remove_stale_temp_files_in

logger = logging.getLogger("luigi-interface")

CONTAINER_SCHEMA = pa.schema([("name", pa.string()), ("wnid", pa.string()), ("source", pa.string()),
                              ("offset", pa.int64()), ("size", pa.int64()), ("kind", pa.string())])


class PipelineError(RuntimeError):
    """A build cannot go on; the message says why and what to do."""


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_parquet(table: pa.Table, path: str | os.PathLike, row_group_size: int | None = None) -> None:
    """Write a Parquet file atomically with settings that give identical bytes on every rerun."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd",
                   row_group_size=row_group_size or max(1, min(table.num_rows, 1 << 20)),
                   write_statistics=True, store_schema=True)
    os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    atomic_write_bytes(path, text.encode())


def shards_present(output_dir, names) -> bool:
    """True when every shard file in ``names`` exists (one stat per shard, none per image)."""
    return all((Path(output_dir) / name).is_file() for name in names)


class DatasetTask(luigi.Task):
    """Parameters shared by every task; ``BuildImageNet21KP`` passes its own values down."""

    archive = luigi.Parameter(description="raw archive: fall11 .tar, winter21 .tar.gz, or a directory "
                                          "of class tars / class folders (read in place)")
    output_dir = luigi.Parameter(description="where shards and tables are written")
    work_dir = luigi.Parameter(default="", description="intermediate files (default: OUTPUT_DIR/_work)")
    min_images = luigi.IntParameter(default=501, description="keep classes with at least this many images")
    val_per_class = luigi.IntParameter(default=50, description="held-out validation images per class")
    val_rule = luigi.ChoiceParameter(choices=VAL_RULES, default="first",
                                     description="first: first N by sorted member name; random: seeded draw")
    seed = luigi.IntParameter(default=0, description="seed of the train shuffle (and of val_rule=random)")
    image_size = luigi.IntParameter(default=224, description="squish-resize target (square)")
    jpeg_quality = luigi.IntParameter(default=95, description="JPEG quality of the resized images")
    samples_per_shard = luigi.IntParameter(default=5000, description="samples per WebDataset shard")
    tree_source = luigi.ChoiceParameter(choices=("wordnet", "is_a"), default="wordnet",
                                        description="is-a relation of the semantic tree")
    is_a_path = luigi.Parameter(default="", description="ImageNet's wordnet.is_a.txt (tree_source=is_a)")
    words_path = luigi.Parameter(default="", description="ImageNet's words.txt for class names (optional)")
    index_chunks = luigi.IntParameter(default=64, description="index tasks (class tars are split among them)")
    shard_groups = luigi.IntParameter(default=256, description="shard-writing tasks (shards are dealt round-robin)")

    # ---- paths -------------------------------------------------------------------------------
    @property
    def work_root(self) -> Path:
        return Path(self.work_dir or Path(self.output_dir) / "_work")

    @cached_property
    def layout(self) -> str:
        return detect_layout(self.archive)

    @cached_property
    def archive_dir(self) -> Path:
        try:
            st = os.stat(self.archive)
        except OSError as exc:
            raise ArchiveError(f"archive not found or unreadable: {self.archive} ({exc.strerror})") from None
        return self.work_root / f"archive-{_hash(os.path.abspath(self.archive), st.st_size, st.st_mtime_ns)}"

    @property
    def readable_root(self) -> Path:
        """Where container sources are resolved: the archive, or the extracted class tars."""
        return self.archive_dir / "extracted" if self.layout == "tar.gz" else Path(self.archive)

    def planning_values(self) -> dict:
        return dict(min_images=self.min_images, val_per_class=self.val_per_class, val_rule=self.val_rule,
                    seed=self.seed, samples_per_shard=self.samples_per_shard, tree_source=self.tree_source,
                    is_a_path=_file_identity(self.is_a_path), words_path=_file_identity(self.words_path))

    def output_values(self) -> dict:
        return dict(self.planning_values(), image_size=self.image_size, jpeg_quality=self.jpeg_quality)

    @property
    def plan_dir(self) -> Path:
        return self.archive_dir / f"plan-{_hash(self.planning_values())}"

    @property
    def shards_work_dir(self) -> Path:
        return self.plan_dir / f"images-{_hash(self.image_size, self.jpeg_quality)}"

    def progress(self, total: int, what: str) -> TaskProgress:
        return TaskProgress(self, total, what)

    def on_failure(self, exception):
        """Known input problems are reported as one clear line, not a traceback."""
        from hierarchy.wordnet import WordNetMissing

        if isinstance(exception, (ArchiveError, PipelineError, WordNetMissing)):
            return f"{type(exception).__name__}: {exception}"
        return super().on_failure(exception)

    def status(self, message: str) -> None:
        """A status line in the scheduler's UI (no-op when not run by a worker)."""
        if callable(self.set_status_message):
            self.set_status_message(message)


def _file_identity(path: str):
    if not path:
        return None
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


class ExtractGzip(DatasetTask):
    """winter21 .tar.gz only: one sequential pass writing the class tars into the work dir."""

    resources = {"archive_io": 1}

    def output(self):
        return luigi.LocalTarget(str(self.archive_dir / "extracted" / gzip_extract.MANIFEST))

    def run(self):
        dest = self.archive_dir / "extracted"
        total = os.path.getsize(self.archive)
        bar = self.progress(total, "extracting class tars")
        gzip_extract.extract_class_tars(self.archive, dest, progress=lambda done, _: bar.update(done))
        bar.close()


class ListContainers(DatasetTask):
    """The class containers of the archive (outer tar headers scanned with seeks)."""

    resources = {"archive_io": 1}

    def requires(self):
        return self.clone(ExtractGzip) if self.layout == "tar.gz" else []

    def output(self):
        return luigi.LocalTarget(str(self.archive_dir / "containers.parquet"))

    def run(self):
        if self.layout == "tar.gz":
            containers = gzip_extract.extracted_containers(self.archive_dir / "extracted")
        else:
            containers = list_containers(self.archive, self.layout)
        table = pa.Table.from_pylist([c.__dict__ for c in containers], schema=CONTAINER_SCHEMA)
        write_parquet(table, self.output().path)


class IndexChunk(DatasetTask):
    """Stage 1: index the image members of one contiguous chunk of class containers."""

    chunk = luigi.IntParameter()
    resources = {"archive_io": 1}

    def requires(self):
        return self.clone(ListContainers)

    def output(self):
        base = self.archive_dir / "index" / f"chunk-{self.chunk:05d}-of-{self.index_chunks:05d}"
        return {"rejects": luigi.LocalTarget(f"{base}.rejects.parquet"),
                "images": luigi.LocalTarget(f"{base}.parquet")}

    def run(self):
        table = pq.read_table(self.input().path)
        n = table.num_rows
        lo, hi = self.chunk * n // self.index_chunks, (self.chunk + 1) * n // self.index_chunks
        containers = [Container(**row) for row in table.slice(lo, hi - lo).to_pylist()]
        bar = self.progress(len(containers), f"index chunk {self.chunk}")
        result = index_containers(self.readable_root, containers, progress=lambda d, _: bar.update(d))
        images, rejects = result.tables()
        write_parquet(rejects, self.output()["rejects"].path)
        crash_point("index_chunk")
        write_parquet(images, self.output()["images"].path)  # written last: marks the chunk done
        bar.close(f"indexed {images.num_rows} images, {rejects.num_rows} rejects")


class IndexMixin(DatasetTask):
    """Tasks that read the whole index."""

    def index_requirements(self):
        return [self.clone(IndexChunk, chunk=i) for i in range(self.index_chunks)]

    def read_index(self) -> tuple[pa.Table, pa.Table]:
        chunks = [c.output() for c in self.index_requirements()]
        images = pa.concat_tables([pq.read_table(c["images"].path) for c in chunks])
        rejects = pa.concat_tables([pq.read_table(c["rejects"].path) for c in chunks])
        return images, rejects


class CountClasses(IndexMixin):
    """Stage 2: images per class and the kept classes (``class_counts.parquet``)."""

    def requires(self):
        return self.index_requirements()

    def output(self):
        return {"duplicates": luigi.LocalTarget(str(self.plan_dir / "duplicates.parquet")),
                "counts": luigi.LocalTarget(str(self.plan_dir / "class_counts.parquet"))}

    def run(self):
        from hierarchy import unknown_wnids

        images, rejects = self.read_index()
        images, duplicates = classes_mod.drop_duplicate_keys(images)
        dup_rejects = pa.Table.from_pylist(
            [dict(key=r["key"], member=r["member"], wnid=r["wnid"], stage="index", reason="duplicate_key",
                  detail=f"another member of {r['wnid']} has the same key") for r in duplicates.to_pylist()],
            schema=REJECT_SCHEMA)
        empty = [r["wnid"] for r in rejects.to_pylist() if r["reason"] == "empty_class" and r["wnid"]]
        candidates = sorted(set(images.column("wnid").to_pylist()))
        unknown = set(unknown_wnids(candidates, source=self.tree_source, is_a_path=self.is_a_path or None))
        counts = classes_mod.count_and_filter(images, self.min_images, lambda w: w not in unknown, empty)
        write_parquet(dup_rejects, self.output()["duplicates"].path)
        write_parquet(counts, self.output()["counts"].path)
        kept = sum(counts.column("kept").to_pylist())
        self.status(f"{kept} of {counts.num_rows} classes kept (min_images={self.min_images})")


class BuildTree(DatasetTask):
    """Stage 3: the semantic tree over the kept classes (``semantic_tree.json``)."""

    def requires(self):
        return self.clone(CountClasses)

    def output(self):
        return luigi.LocalTarget(str(self.plan_dir / "semantic_tree.json"))

    def run(self):
        from hierarchy import SemanticTree

        counts = pq.read_table(self.input()["counts"].path)
        wnids = classes_mod.kept_wnids(counts)
        if not wnids:
            raise PipelineError(f"no class has at least min_images={self.min_images} images; "
                                "nothing to build (lower --min-images?)")
        tree = SemanticTree.build(wnids, source=self.tree_source, is_a_path=self.is_a_path or None,
                                  words_path=self.words_path or None)
        tree.save(self.output().path)


class PlanShards(IndexMixin):
    """Stage 4: validation split and the sample → shard plan (``plan.parquet``).

    Needs the class list (the sorted kept wnids), not the tree, so it runs beside ``BuildTree``.
    """

    def requires(self):
        return {"counts": self.clone(CountClasses), "index": self.index_requirements()}

    def output(self):
        return luigi.LocalTarget(str(self.plan_dir / "plan.parquet"))

    def run(self):
        counts = self.input()["counts"]
        class_list = classes_mod.kept_wnids(pq.read_table(counts["counts"].path))
        images, _ = self.read_index()
        if pq.ParquetFile(counts["duplicates"].path).metadata.num_rows:  # CountClasses found some
            images, _ = classes_mod.drop_duplicate_keys(images)
        plan = plan_samples(images, class_list, self.val_per_class, self.val_rule, self.seed,
                            self.samples_per_shard)
        path = Path(self.output().path)
        write_text(path.with_suffix(".shards.json"), json.dumps(shard_counts(plan), sort_keys=True))
        # the plan itself last (it marks the stage done); one row group per shard, so a shard task
        # reads only its own rows
        write_parquet(plan, path, row_group_size=self.samples_per_shard)


class ClaimOutputDir(DatasetTask):
    """Records the output-changing parameters in ``OUTPUT_DIR/_params.json``; refuses others."""

    def output(self):
        return luigi.LocalTarget(str(Path(self.output_dir) / "_params.json"))

    def expected(self) -> dict:
        return dict(self.output_values(), archive=os.path.abspath(self.archive))

    def complete(self):
        path = Path(self.output().path)
        if not path.is_file():
            return False
        recorded = json.loads(path.read_text())
        if recorded != json.loads(json.dumps(self.expected())):
            changed = sorted(k for k in set(recorded) | set(self.expected())
                             if recorded.get(k) != json.loads(json.dumps(self.expected())).get(k))
            raise PipelineError(
                f"{self.output_dir} was built with other parameters ({', '.join(changed)} differ); "
                "use a new --output-dir or delete the old one")
        return True

    def run(self):
        write_text(self.output().path, json.dumps(self.expected(), indent=1, sort_keys=True) + "\n")


class WriteShardGroup(DatasetTask):
    """Stage 5: decode, squish-resize and write the shards dealt to this group."""

    group = luigi.IntParameter()
    resources = {"archive_io": 1}

    def requires(self):
        return {"plan": self.clone(PlanShards), "tree": self.clone(BuildTree), "claim": self.clone(ClaimOutputDir)}

    def output(self):
        return luigi.LocalTarget(str(self.shards_work_dir / f"group-{self.group:05d}-of-{self.shard_groups:05d}.json"))

    def complete(self):
        """Done when the group summary exists and so do its shards (a deleted shard is rebuilt)."""
        path = Path(self.output().path)
        if not path.is_file():
            return False
        names = [s["name"] for s in json.loads(path.read_text())["shards"]]
        return shards_present(self.output_dir, names)

    def run(self):
        from hierarchy import SemanticTree

        from pipeline.pil_build import describe_pil_build

        logger.info("shard group %d/%d with %s", self.group, self.shard_groups, describe_pil_build())
        tree = SemanticTree.load(self.input()["tree"].path)
        summary = write_shard_group(
            plan_path=self.input()["plan"].path, group=self.group, groups=self.shard_groups,
            archive_root=self.readable_root, output_dir=Path(self.output_dir),
            sidecar_dir=self.shards_work_dir, chains=[tree.chain(i) for i in range(tree.num_classes)],
            image_size=self.image_size, jpeg_quality=self.jpeg_quality, task=self)
        write_text(self.output().path, json.dumps(summary, indent=1, sort_keys=True) + "\n")


class WriteTables(DatasetTask):
    """Stage 6: labels, classes, rejects, class counts and the tree, in the output dir."""

    def requires(self):
        return {"groups": [self.clone(WriteShardGroup, group=g) for g in range(self.shard_groups)],
                "plan": self.clone(PlanShards), "tree": self.clone(BuildTree), "counts": self.clone(CountClasses),
                "index": [self.clone(IndexChunk, chunk=i) for i in range(self.index_chunks)]}

    def output(self):
        out = Path(self.output_dir)
        targets = {name: luigi.LocalTarget(str(out / name)) for name in tables.TABLE_FILES}
        targets["tree"] = luigi.LocalTarget(str(out / "semantic_tree.json"))
        targets["accounting"] = luigi.LocalTarget(str(self.shards_work_dir / "accounting.json"))
        return targets

    def complete(self):
        if not super().complete():
            return False
        accounting = json.loads(Path(self.output()["accounting"].path).read_text())
        return shards_present(self.output_dir, accounting["shard_lengths"])

    def run(self):
        remove_stale_temp_files_in(self.output_dir)  # left by a killed run of this task
        inp = self.input()
        summaries = [json.loads(Path(t.path).read_text()) for t in inp["groups"]]
        index_rejects = [pq.read_table(c["rejects"].path) for c in inp["index"]]
        built, accounting = tables.build_tables(
            plan=pq.read_table(inp["plan"].path), tree_path=inp["tree"].path,
            class_counts=pq.read_table(inp["counts"]["counts"].path),
            rejects=pa.concat_tables(index_rejects + [pq.read_table(inp["counts"]["duplicates"].path)]),
            group_summaries=summaries)
        accounting["index_entries"] = sum(pq.ParquetFile(c[k].path).metadata.num_rows
                                          for c in inp["index"] for k in ("images", "rejects"))
        for name, table in built.items():
            write_parquet(table, self.output()[name].path)
            crash_point("tables")
        write_text(self.output()["tree"].path, Path(inp["tree"].path).read_text())
        write_text(self.output()["accounting"].path, json.dumps(accounting, indent=1, sort_keys=True) + "\n")


class BuildImageNet21KP(DatasetTask):
    """Build ImageNet-21K-P from the raw archive: shards, tables, ``_info.json``, dataset card."""

    def requires(self):
        return self.clone(WriteTables)

    def complete(self):
        # a finished output dir built with other parameters is an error, not "done";
        # a shard deleted after the build (e.g. a damaged copy) makes the build incomplete again
        return self.clone(ClaimOutputDir).complete() and self.clone(WriteTables).complete() and super().complete()

    def output(self):
        out = Path(self.output_dir)
        return {"stats": luigi.LocalTarget(str(out / "stats.json")),
                "card": luigi.LocalTarget(str(out / "README.md")),
                "info": luigi.LocalTarget(str(out / "_info.json"))}

    def run(self):
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
        info = tables.timm_info(accounting["shard_lengths"])
        write_text(self.output()["stats"].path, json.dumps(stats, indent=1, sort_keys=True) + "\n")
        write_text(self.output()["card"].path, tables.dataset_card(stats))
        write_text(self.output()["info"].path, json.dumps(info, indent=1, sort_keys=True) + "\n")
        self.status(f"{stats['samples']['train']} train + {stats['samples']['validation']} "
                    f"validation samples in {stats['num_classes']} classes")
