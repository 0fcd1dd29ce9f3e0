"""The group-level flags of the BIDS-App call (no heavy imports: torch loads only for a group run).

Defaults come from :class:`nmflow.group.settings.GroupSettings`, their one source.
"""

from __future__ import annotations

from pathlib import Path

from nmflow.group.settings import GroupSettings


def add_group_arguments(parser) -> None:
    """Add the group-level flags to ``parser`` (a parser or an argument group)."""
    defaults = GroupSettings()
    parser.add_argument("--participants", type=Path,
                        help="participants TSV (default: FMRIPREP_DIR/participants.tsv)")
    parser.add_argument("--group-column", default=defaults.group_column, help="column with the diagnosis")
    parser.add_argument("--control-label", default=defaults.control_label, help="value of --group-column for controls")
    parser.add_argument("--site-column", default=defaults.site_column,
                        help="column with the site/scanner (absent: one site)")
    parser.add_argument("--covariates", nargs="*", default=list(defaults.covariates),
                        help="columns the normative models condition on (and ComBat keeps), e.g. age sex")
    parser.add_argument("--timeseries-dir", type=Path,
                        help="folder of BEP017 *_timeseries.tsv from another tool (XCP-D, giga_connectome ...); "
                             "FC is computed with --metrics")
    parser.add_argument("--connectivity-dir", type=Path,
                        help="BIDS derivatives folder of *_relmat.tsv from another pipeline: XCP-D's "
                             "stat-pearsoncorrelation (read as pearson) or nmflow/BEP017 meas-<metric>")
    parser.add_argument("--matrix-dir", type=Path,
                        help="folder of .tsv/.csv/.npy matrices, one per subject: the subject is the first "
                             "sub-<label> of the file name, else the name without extension (needs --matrix-values)")
    parser.add_argument("--matrix-values", choices=["r", "z", "covariance"],
                        help="what the --matrix-dir matrices hold: correlations, Fisher z or covariances")
    parser.add_argument("--matrix-regions", type=Path,
                        help="region names of the --matrix-dir matrices, one per line, in their order")
    parser.add_argument("--variants", nargs="+",
                        help="only variants whose label (atlas-X_seg-Y_desc-Z_meas-W) matches one of these "
                             "shell patterns, e.g. '*desc-gsr*'")
    parser.add_argument("--folds", type=int, default=defaults.folds,
                        help="cross-fitting folds over the controls (stratified by site): every control is scored "
                             "by models that never saw it and all controls form the reference")
    parser.add_argument("--val-split", type=float, default=defaults.val_split,
                        help="share of each fold's training controls kept for early stopping")
    parser.add_argument("--split-file", type=Path,
                        help="TSV participant_id, split (train/val/test): one fixed fit instead of cross-fitting; "
                             "test controls are the reference")
    parser.add_argument("--harmonize", choices=["none", "combat"], default=defaults.harmonize,
                        help="site harmonisation fitted on training controls")
    parser.add_argument("--n-bootstrap", type=int, default=defaults.n_bootstrap,
                        help="bootstrap models per variant (on controls only) for variant selection (0: none)")
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="significance level")
    parser.add_argument("--p-rule", choices=["fdr", "raw"], default=defaults.p_rule,
                        help="flag on BH q (fdr) or on uncorrected p (raw: no correction for the number of connections)")
    parser.add_argument("--single-case-rule", choices=["maxt", "fdr", "raw"], default=defaults.single_case_rule,
                        help="single-case flags: family-wise p calibrated on the controls (maxt), BH q of the "
                             "Crawford-Howell p (fdr) or uncorrected p (raw)")
    parser.add_argument("--test-score", choices=["signed", "absolute"], default=defaults.test_score,
                        help="deviation compared by the group and single-case tests: the signed residual z "
                             "(two-sided) or its absolute value")
    parser.add_argument("--z-scale", choices=["pooled", "site"], default=defaults.z_scale,
                        help="standardise residuals by the controls' out-of-sample residual scale pooled over "
                             "sites or within the subject's site")
    parser.add_argument("--init-model", type=Path,
                        help="fine-tune this model (.safetensors with its .json card) on this dataset's controls "
                             "(in every cross-fitting fit); its feature set and covariate coding are kept")
    parser.add_argument("--no-fine-tune", action="store_true",
                        help="with --init-model: score everyone with the model as it is (no training here); the "
                             "z-scores are calibrated on this dataset's controls")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (splits, resamples, weights)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="maximum training epochs")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="Adam learning rate")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                        help="Adam weight decay (L2): shrinks the weights so one deviant connection moves the "
                             "reconstruction of the others less")
    parser.add_argument("--mask-fraction", type=float, default=defaults.mask_fraction,
                        help="masked training: share of features hidden from the input and predicted from the "
                             "others (0: plain autoencoder reconstructing its whole input)")
    parser.add_argument("--patience", type=int, default=defaults.patience, help="early-stopping patience (epochs)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="subjects per mini-batch of training (an epoch is one pass over a model's "
                             "training controls)")
    parser.add_argument("--mem-gb", type=float, default=defaults.mem_gb,
                        help="memory (GiB) a run may use. Participant level: Nipype's MultiProc starts no more "
                             "nodes than fit in it. Group level: shared by the --nprocs steps run at once "
                             "(default: the memory available when a step starts): the autoencoders train "
                             "stacked while they fit in what the data leave of it (at most 2 GiB of models: "
                             "more stacking gains no speed) and in sequence beyond.  It bounds the models, "
                             "not the data (about 6 arrays of subjects x connections x 4 bytes).  Results do "
                             "not depend on it")
    parser.add_argument("--omp-nthreads", type=int,
                        help="threads per process. Participant level: numpy's BLAS threads of each node, and "
                             "the processes a run's report draws its figures with (default: the cores this "
                             "process may use divided by --nprocs, so that the nodes running at once do not "
                             "oversubscribe them). Group level: the autoencoders' training "
                             f"(default: {defaults.omp_nthreads}, fixed, not the machine's core count: the models' "
                             "float sums depend on it, so a new value gives slightly different models; 2 trains "
                             "about 1.8x faster than 1 at 400 regions)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=defaults.device,
                        help="torch device of training and scoring (auto: cuda when torch sees a GPU)")
    parser.add_argument("--max-missing", type=float, default=defaults.max_missing,
                        help="drop connections missing in more than this fraction of subjects")


def check_group_arguments(args) -> None:
    """Refuse group options that do not fit together or name no folder/file, before anything runs.

    Raises
    ------
    NmflowInputError
        One line naming the option (and the path) and the problem.
    """
    from nmflow.errors import NmflowInputError

    for flag, folder in (("--timeseries-dir", args.timeseries_dir), ("--connectivity-dir", args.connectivity_dir),
                         ("--matrix-dir", args.matrix_dir)):
        if folder is not None and not Path(folder).is_dir():
            raise NmflowInputError(folder, f"{flag}: folder not found")
    if args.matrix_dir is None:
        given = [f for f, v in (("--matrix-values", args.matrix_values), ("--matrix-regions", args.matrix_regions))
                 if v is not None]
        if given:
            raise NmflowInputError(None, f"{' and '.join(given)} describe(s) the matrices of --matrix-dir, not given")
    elif args.matrix_values is None:
        raise NmflowInputError(None, "--matrix-dir needs --matrix-values r|z|covariance (what the matrices hold)")
    if args.matrix_regions is not None:
        from nmflow.group.external import read_regions

        read_regions(args.matrix_regions)


def check_group_resources(args) -> None:
    """Refuse ``--device cuda`` without a GPU (:class:`~nmflow.errors.NmflowInputError`, one line); the
    numbers are checked with the others (:data:`nmflow.cli.common.NUMBER_RULES`)."""
    from nmflow.errors import NmflowInputError

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise NmflowInputError(None, "--device cuda: torch sees no CUDA GPU on this machine (use auto or cpu)")
