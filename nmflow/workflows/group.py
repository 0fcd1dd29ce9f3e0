"""Group-level workflow: ``nmflow FMRIPREP_DIR OUT_DIR group``.

``collect_cohort`` (PyBIDS) -> ``split`` (cross-fitting plan) -> ``harmonize``
(per variant and fit: imputation, ComBat, scaler, covariates, linear
baseline) -> ``batch_by_width`` -> ``train`` (one node per input width: every
model of those variants trained as one stacked batch) -> ``score`` (per
variant: out-of-sample deviations, calibration, the model to keep) ->
``group_tests`` and ``single_case`` (per variant) -> ``select`` (controls
only) -> ``report`` -> sinks.  Variants are MapNode items, so a plugin
(``--plugin MultiProc|SLURM ...``) spreads them; the workflow is cached in
``-w`` like the participant level: a re-run after a crash resumes, and a
changed option reruns only the steps that read it (each node receives only
its settings).

Outputs are written into a staging folder inside ``OUT_DIR/group`` and moved
into place only when the whole workflow succeeded.
"""

from __future__ import annotations

from pathlib import Path

from nipype import MapNode, Node

from nmflow.bids_io import warn_other_version, write_dataset_description
from nmflow.group.settings import GroupSettings
from nmflow.interfaces.cohort import CollectCohort, MakeSplit
from nmflow.interfaces.derivatives import VariantDerivativesSink
from nmflow.interfaces.group_report import CopyGroupReport, GroupReport
from nmflow.interfaces.normative import BatchByWidth, PrepareVariant, ScoreDeviations, TrainModels
from nmflow.interfaces.stats import GroupTests, SelectVariants, SingleCases
from nmflow.log import LOG
from nmflow.workflows.boilerplate import group_desc, references
from nmflow.workflows.engine import Progress, Workflow, run_group_workflow

COHORT = ("bids_dir", "participants", "group_column", "site_column", "covariates")
TRAINING = ("epochs", "learning_rate", "weight_decay", "patience", "seed", "mask_fraction", "batch_size",
            "omp_nthreads", "n_bootstrap", "init_model", "no_fine_tune")
RESOURCES = ("mem_gb", "device", "nprocs")  # change no number; a new value re-runs the steps reading them
STEP_SETTINGS = {
    "collect_cohort": COHORT + ("out_dir", "participant_label", "control_label", "timeseries_dir", "metrics",
                                "variants", "init_model", "connectivity_dir", "matrix_dir", "matrix_values",
                                "matrix_regions", "folds", "val_split", "seed", "split_file", "no_fine_tune"),
    "split": COHORT + ("control_label", "folds", "val_split", "seed", "split_file", "no_fine_tune", "init_model"),
    "harmonize": COHORT + ("harmonize", "max_missing", "init_model"),
    "train": COHORT + TRAINING + RESOURCES,
    "score": COHORT + TRAINING + RESOURCES + ("harmonize", "z_scale", "test_score", "alpha", "single_case_rule"),
    "group_tests": COHORT + ("control_label", "test_score", "alpha", "p_rule"),
    "single_case": COHORT + ("test_score", "alpha", "single_case_rule"),
    "select": COHORT + ("control_label", "n_bootstrap", "init_model"),
    "report": COHORT + ("control_label", "harmonize", "test_score", "p_rule", "alpha", "single_case_rule",
                        "atlas_dir", "out_dir", "timeseries_dir"),
}
VARIANT_OUTPUTS = [  # (node, output, suffix, extension)
    ("score", "deviations", "deviations", ".tsv"), ("score", "linearz", "linearz", ".tsv"),
    ("group_tests", "stats", "stats", ".tsv"), ("single_case", "singlecase", "singlecase", ".tsv"),
    ("score", "calibration", "calibration", ".tsv"), ("group_tests", "networks", "networks", ".tsv"),
    ("score", "model", "model", ".safetensors"), ("score", "curves", "curves", ".tsv"),
]


# imported by the nodes when they run (see run_workflow's ``preload``)
NODE_IMPORTS = ("torch", "neuroCombat", "nmflow.interfaces.derivatives", "nmflow.reports.group")


def stage_labels(settings: GroupSettings) -> dict[str, str]:
    """Node name -> the words of its progress lines, ``<words> ...`` and ``[k/N stages, ...] <words> done (t s)``
    (the sinks are not listed)."""
    return {
        "collect_cohort": "features and phenotypes", "split": "cross-fitting split",
        "harmonize": f"site harmonisation ({settings.harmonize}), scaling, covariates",
        "batch_by_width": "models batched by input width",
        "train": f"autoencoder training (up to {settings.epochs} epochs, early stopping)",
        "score": "deviation scores", "group_tests": "group statistics (Mann-Whitney U, FDR)",
        "single_case": "single-case statistics (Crawford-Howell)", "select": "variant ranking",
        "report": "group report",
    }


def init_group_wf(settings: GroupSettings, staging: Path) -> Workflow:
    """The group-level workflow; its sinks write ``staging/group/...`` (``staging`` stands for OUT_DIR)."""
    wf = Workflow(name="nmflow_group_wf")
    wf.__desc__ = methods = group_desc(settings)
    nodes = {}

    def node(interface, name: str, iterfield: list[str] | None = None, **kwargs):
        if name in STEP_SETTINGS:
            kwargs["settings"] = settings.as_dict(STEP_SETTINGS[name])
        made = (MapNode(interface(**kwargs), iterfield=iterfield, name=name) if iterfield
                else Node(interface(**kwargs), name=name))
        nodes[name] = made
        return made

    collect = node(CollectCohort, "collect_cohort")
    collect.overwrite = True  # always look at OUT_DIR again: new participants may have been added
    split = node(MakeSplit, "split")
    harmonize = node(PrepareVariant, "harmonize", ["features"])
    batch = node(BatchByWidth, "batch_by_width")
    train = node(TrainModels, "train", ["prepared"])
    score = node(ScoreDeviations, "score", ["prepared"])
    tests = node(GroupTests, "group_tests", ["scored"])
    single = node(SingleCases, "single_case", ["scored"])
    select = node(SelectVariants, "select")
    report = node(GroupReport, "report", methods=methods + references(methods))
    cohort_steps = [split, harmonize, train, score, tests, single, select, report]
    for step in cohort_steps:
        wf.connect(collect, "subjects", step, "subjects")
    for step in cohort_steps[1:]:
        wf.connect(split, "split", step, "split")
        wf.connect(collect, "motion", step, "motion")  # mean FD, a covariate or QC-FC's measure
    wf.connect([
        (collect, harmonize, [("features", "features")]),
        (collect, split, [("missing", "missing"), (("features", _count), "n_variants")]),
        (harmonize, batch, [("prepared", "prepared"), ("batch_key", "keys")]),
        (batch, train, [("batches", "prepared")]),
        (harmonize, score, [("prepared", "prepared")]),
        (train, score, [(("trained", _flatten), "trained")]),
        (score, tests, [("scored", "scored")]),
        (score, single, [("scored", "scored")]),
        (score, select, [("scored", "scored")]),
        (score, report, [("scored", "scored"), ("curves", "curves"), ("model_meta", "model_meta")]),
        (harmonize, report, [("prepared", "prepared")]),
        (tests, report, [("stats", "stats"), ("networks", "networks")]),
        (single, report, [("singlecase", "singlecase")]),
        (select, report, [("selection", "selection")]),
        (collect, report, [("messages", "messages"), ("features", "features"), ("reports", "reports")]),
    ])
    for source, output, suffix, extension in VARIANT_OUTPUTS:
        sink = MapNode(VariantDerivativesSink(base_directory=str(staging), suffix=suffix, extension=extension),
                       iterfield=["in_file", "meta_dict", "entities"], name=f"ds_{suffix}")
        wf.connect([(nodes[source], sink, [(output, "in_file"), (f"{output}_meta", "meta_dict")]),
                    (score, sink, [("entities", "entities")])])
    cohort_files = [("split", "subjects_table", "subjects_meta", "subjects"),
                    ("select", "selection", "selection_meta", "selection")]  # no ranking: nothing written
    for source, output, meta, suffix in cohort_files:
        sink = Node(VariantDerivativesSink(base_directory=str(staging), suffix=suffix, extension=".tsv"),
                    name=f"ds_{suffix}")
        wf.connect([(nodes[source], sink, [(output, "in_file"), (meta, "meta_dict")])])
    copy_report = Node(CopyGroupReport(base_directory=str(staging)), name="ds_report")
    wf.connect(report, "report_dir", copy_report, "report_dir")
    return wf


def _count(items: list) -> int:
    """Number of items (of variants' files)."""
    return len(items)


def _flatten(batches: list) -> list:
    """The per-variant files of every training batch, in one list."""
    return [path for batch in batches for path in batch]


def run_group(settings: GroupSettings) -> int:
    """Run the group level; returns 0, raises :class:`~nmflow.errors.NmflowInputError` on bad input or a failed step.

    OUT_DIR made by another nmflow version: a warning first.  A group-only call (its features from another
    pipeline's folder) writes OUT_DIR's ``dataset_description.json`` once it succeeded; an existing one, the
    participant level's, is kept.
    """
    warn_other_version(settings.out_dir)
    summary, notes = run_group_workflow(lambda staging: init_group_wf(settings, staging), settings, "crashes_group",
                                        lambda graph, group: (_summary(group), _notes(graph)), preload=NODE_IMPORTS,
                                        progress=Progress(stage_labels(settings), noun="stages", announce=True))
    source = settings.connectivity_dir or settings.timeseries_dir or settings.matrix_dir or settings.bids_dir
    write_dataset_description(settings.out_dir, source, keep=True)
    LOG.info(f"{summary} -> {Path(settings.out_dir) / 'group'}")
    for message in notes:
        LOG.info(f"nmflow: note: {message}")
    return 0


def _notes(graph) -> list[str]:
    """Notes of the cohort collection and of every variant's scoring, without repeats."""
    from nmflow.group.scoring import scored_messages

    results = {n.name: n.result.outputs for n in graph.nodes() if n.name in ("collect_cohort", "score")}
    messages = list(results["collect_cohort"].messages)
    messages += [m for path in results["score"].scored for m in scored_messages(path)]
    return list(dict.fromkeys(messages))


def _summary(staging: Path) -> str:
    """One line: variants, subjects, reference controls, patients, the selected variant."""
    import pandas as pd

    subjects = pd.read_csv(staging / "subjects.tsv", sep="\t")
    variants = sorted(p.name[:-len("_stats.tsv")] for p in staging.glob("*_stats.tsv"))
    selection_file = staging / "selection.tsv"
    if selection_file.exists():
        selection = pd.read_csv(selection_file, sep="\t")
        chosen = (f"selected {selection.variant.iloc[0]}" if selection.selected.any()
                  else "no variant gives stable findings")
    else:
        chosen = f"selected {variants[0]}"
    reference = subjects.split.str.startswith("fold-") | subjects.split.eq("test")
    n_patients = int(subjects.split.eq("patient").sum())
    return (f"nmflow group: {len(variants)} variant(s), {len(subjects)} subjects ({int(reference.sum())} reference "
            f"controls, {n_patients} patients); {chosen}")
