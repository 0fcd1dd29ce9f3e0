"""Population model: subject-level network FC with realistic between-subject variability.

A subject's network signals are ``(n_volumes, n_networks)``, band-limited to
0.01-0.08 Hz, made of three independent parts:

* **subject network signals** with true correlation
  ``C_s = (1 - w) * G_s + w * W_s``: ``G_s`` is the group matrix (control or a
  patient group) plus the subject's age/sex effects, and ``W_s`` is the sample
  correlation of ``dof`` Gaussian draws with population correlation ``G_s``.
  A mix of two positive (semi-)definite matrices with unit diagonal is a
  positive-definite correlation matrix, so no projection is ever needed, and
  the distribution of connection ``(i, j)`` of ``C_s`` depends on ``G_s[i, j]``
  only: a change planted on one connection leaks onto no other connection;
* a **global signal** shared by all networks with a subject-specific variance
  ``a_s**2`` (gamma distributed, the same distribution in every group), which
  moves all connections of a subject together (the first principal component
  of real control FC);
* a **site signal** shared by all networks with site-specific loadings
  ``u_site`` ``(n_networks,)`` (an additive site effect in FC space).

The subject's true FC (without the site artefact) is therefore
``T_s = (C_s + a_s**2) / (1 + a_s**2)``; the observed FC is the sample
correlation of the time series (plus the site term) and its Fisher z is the
feature the group level sees.

Disorder effects are planted on the group matrices.  In the default mode the
size of each planted connection is a subject-level Cohen's d on the observed
Fisher-z feature: ``d = (mean_patients - mean_controls) / sd_controls``,
where ``sd_controls`` is the controls' within-site standard deviation of that
feature.  The change of the group correlation giving a target ``d`` is found
by Monte-Carlo on the control model (see :class:`Calibrator`).  The
alternative ``delta`` mode moves each planted group correlation by exactly
``delta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.stats import norm

from nmflow.simulate.settings import PopulationParams

AGE_CENTRE = 45.0  # years; the age effect is per decade around this age


class PlantingError(ValueError):
    """A requested layout of planted effects cannot be realised; the message says what to change."""


@dataclass
class PopulationModel:
    """Everything needed to draw subjects of a simulated cohort.

    Attributes
    ----------
    control : ndarray, shape (n_networks, n_networks)
        Control group correlation matrix.
    group_corr : dict of str to ndarray, shape (n_networks, n_networks)
        Group matrix of ``"control"`` and of every patient group.
    planted : DataFrame
        One row per (group, connection): ``group``, ``connection`` (feature index,
        ``numpy.triu_indices(n, 1)`` order), ``i``, ``j`` (0-based networks), ``kind``
        (specific/shared), ``delta`` (change of the group correlation), ``d`` (target
        Cohen's d; NaN in delta mode), ``d_realised`` (Monte-Carlo estimate on the model).
    covariates : DataFrame
        One row per covariate connection: ``covariate`` (age/sex), ``connection``, ``i``,
        ``j``, ``delta`` (per decade / female minus male), ``unit``, ``d`` (Cohen's d of one
        unit, Monte-Carlo estimate).
    site_loadings : dict of str to ndarray, shape (n_networks,)
        Loadings of each site's shared signal.
    params : PopulationParams
    n_volumes, tr : int, float
        Scan length and repetition time (s) the calibration used.
    """

    control: np.ndarray
    group_corr: dict[str, np.ndarray]
    planted: pd.DataFrame
    covariates: pd.DataFrame
    site_loadings: dict[str, np.ndarray]
    params: PopulationParams = field(default_factory=PopulationParams)
    n_volumes: int = 200
    tr: float = 2.0

    @property
    def n_networks(self) -> int:
        return self.control.shape[0]

    def covariate_matrix(self, name: str) -> np.ndarray:
        """``(n_networks, n_networks)`` change of the group matrix per unit of covariate ``name``."""
        out = np.zeros_like(self.control)
        for row in self.covariates[self.covariates.covariate == name].itertuples():
            out[row.i, row.j] = out[row.j, row.i] = row.delta
        return out


@dataclass
class SubjectDraws:
    """Drawn subjects.

    Attributes
    ----------
    corr : ndarray, shape (n_subjects, n_networks, n_networks)
        ``C_s``, the subject's network-signal correlation without the global signal.
    global_var : ndarray, shape (n_subjects,)
        ``a_s**2``, variance of the subject's global signal.
    site_loading : ndarray, shape (n_subjects, n_networks)
        Loadings of the site signal (zeros without site effect).
    """

    corr: np.ndarray
    global_var: np.ndarray
    site_loading: np.ndarray

    @property
    def true_fc(self) -> np.ndarray:
        """``(n_subjects, n_networks, n_networks)`` true correlation ``(C_s + a_s**2) / (1 + a_s**2)``."""
        a2 = self.global_var[:, None, None]
        return (self.corr + a2) / (1 + a2)


# -- signals ------------------------------------------------------------------------------------

def bandlimited_batch(n_subjects: int, n_volumes: int, n_signals: int, tr: float, rng: np.random.Generator,
                      low: float = 0.01, high: float = 0.08) -> np.ndarray:
    """Unit-variance Gaussian noise ``(n_subjects, n_volumes, n_signals)`` with power only in [low, high] Hz."""
    n_fft = 2 * n_volumes
    freqs = np.fft.rfftfreq(n_fft, d=tr)
    band = np.flatnonzero((freqs >= low) & (freqs <= high))
    # the inverse FFT of a spectrum that is zero outside the band, as one matrix product
    phase = 2 * np.pi * np.outer(np.arange(n_volumes), band) / n_fft
    basis = np.hstack([np.cos(phase), np.sin(phase)])
    coef = rng.standard_normal((2 * band.size, n_subjects * n_signals))
    signal = (basis @ coef).reshape(n_volumes, n_subjects, n_signals).transpose(1, 0, 2)
    signal -= signal.mean(axis=1, keepdims=True)
    return signal / signal.std(axis=1, keepdims=True)


def gamma_draws(mean: float, sd: float, size, rng: np.random.Generator) -> np.ndarray:
    """Gamma draws with the given mean and standard deviation (zeros when ``mean`` is 0)."""
    if mean <= 0:
        return np.zeros(size)
    shape = (mean / sd) ** 2 if sd > 0 else np.inf
    if not np.isfinite(shape):
        return np.full(size, mean)
    return rng.gamma(shape, mean / shape, size)


def draw_subjects(model: PopulationModel, groups: Sequence[str], ages: Sequence[float], sexes: Sequence[str],
                  sites: Sequence[str] | None, rng: np.random.Generator) -> SubjectDraws:
    """Draw ``len(groups)`` subjects of ``model``.

    Parameters
    ----------
    groups : sequence of str
        Group of each subject (``"control"`` or a patient group of the model).
    ages : sequence of float
        Age in years.
    sexes : sequence of str
        ``"F"`` or ``"M"``.
    sites : sequence of str or None
        Site of each subject (None: no site effect).
    """
    p = model.params
    n_sub, n = len(groups), model.n_networks
    age = (np.asarray(ages, float) - AGE_CENTRE) / 10.0
    sex = np.where(np.asarray(sexes) == "F", 0.5, -0.5)
    g = np.stack([model.group_corr[name] for name in groups]) if n_sub else np.zeros((0, n, n))
    g = g + age[:, None, None] * model.covariate_matrix("age") + sex[:, None, None] * model.covariate_matrix("sex")
    chol = np.linalg.cholesky(g)
    draws = rng.standard_normal((n_sub, p.mix_dof, n)) @ np.swapaxes(chol, 1, 2)
    draws -= draws.mean(axis=1, keepdims=True)
    cov = np.swapaxes(draws, 1, 2) @ draws
    sd = np.sqrt(np.einsum("sii->si", cov))
    w_mat = cov / (sd[:, :, None] * sd[:, None, :])
    corr = (1 - p.mix_weight) * g + p.mix_weight * w_mat
    idx = np.arange(n)
    corr[:, idx, idx] = 1.0
    global_var = gamma_draws(p.global_mean, p.global_sd, n_sub, rng)
    if sites is None:
        loading = np.zeros((n_sub, n))
    else:
        loading = np.stack([model.site_loadings[s] for s in sites]) if n_sub else np.zeros((0, n))
    return SubjectDraws(corr=corr, global_var=global_var, site_loading=loading)


def subject_timeseries(draws: SubjectDraws, n_volumes: int, tr: float, rng: np.random.Generator) -> np.ndarray:
    """Network signals ``(n_subjects, n_volumes, n_networks)`` of ``draws``, band-limited 0.01-0.08 Hz.

    Each subject: ``latent @ chol(C_s).T + a_s * global + site_loading * site`` with
    independent unit-variance band-limited ``latent`` ``(n_volumes, n_networks)``,
    ``global`` and ``site`` ``(n_volumes,)`` signals (arbitrary units).
    """
    n_sub, n = draws.corr.shape[:2]
    latent = bandlimited_batch(n_sub, n_volumes, n + 2, tr, rng)
    chol = np.linalg.cholesky(draws.corr)
    ts = latent[:, :, :n] @ np.swapaxes(chol, 1, 2)
    ts += np.sqrt(draws.global_var)[:, None, None] * latent[:, :, n:n + 1]
    ts += draws.site_loading[:, None, :] * latent[:, :, n + 1:n + 2]
    return ts


def fisher_features(timeseries: np.ndarray) -> np.ndarray:
    """Fisher-z Pearson FC features ``(n_subjects, n_features)`` of ``(n_subjects, n_volumes, n)`` signals,
    in ``numpy.triu_indices(n, 1)`` order."""
    x = timeseries - timeseries.mean(axis=1, keepdims=True)
    cov = np.swapaxes(x, 1, 2) @ x
    sd = np.sqrt(np.einsum("sii->si", cov))
    r = cov / (sd[:, :, None] * sd[:, None, :])
    rows, cols = np.triu_indices(timeseries.shape[2], 1)
    return np.arctanh(np.clip(r[:, rows, cols], -1 + 1e-7, 1 - 1e-7))


def cohens_d(features: np.ndarray, groups: np.ndarray, sites: np.ndarray, group: str,
             control: str = "control") -> np.ndarray:
    """Subject-level Cohen's d ``(n_features,)`` of ``group`` against the controls.

    Features are centred by the controls' site means; d = mean difference divided by
    the controls' pooled within-site standard deviation (ddof 1 per site).
    """
    groups, sites = np.asarray(groups), np.asarray(sites)
    centred = np.array(features, float)
    ctrl = groups == control
    dof, ss = 0, 0.0
    for site in np.unique(sites):
        in_site = sites == site
        ref = ctrl & in_site
        mean = features[ref].mean(axis=0)
        centred[in_site] -= mean
        ss = ss + ((features[ref] - mean) ** 2).sum(axis=0)
        dof += ref.sum() - 1
    sd = np.sqrt(ss / dof)
    return (centred[groups == group].mean(axis=0) - centred[ctrl].mean(axis=0)) / sd


# -- calibration --------------------------------------------------------------------------------

class Calibrator:
    """Monte-Carlo link between a change of a group correlation and Cohen's d of the observed feature.

    ``sd`` ``(n_features,)`` is the controls' pooled within-site SD of the observed Fisher-z
    features, from ``n_timeseries`` simulated control subjects with time series of
    ``n_volumes`` volumes.  :meth:`shift` is the expected change of a feature's mean when
    its group correlation moves by ``delta``, computed at the level of true correlations
    (``n_draws`` draws of ``W``, ``a**2`` and the site loading, common to every ``delta``),
    where the sampling noise of the time series adds no bias worth counting.
    """

    def __init__(self, model: PopulationModel, rng: np.random.Generator, n_timeseries: int = 600,
                 n_draws: int = 4000):
        p = model.params
        self.model = model
        sites = sorted(model.site_loadings) or [None]
        site_of = [sites[k % len(sites)] for k in range(n_timeseries)]
        ages = rng.uniform(20, 70, n_timeseries)
        sexes = rng.choice(["F", "M"], n_timeseries)
        draws = draw_subjects(model, ["control"] * n_timeseries, ages, sexes,
                              None if sites == [None] else site_of, rng)
        feats = fisher_features(subject_timeseries(draws, model.n_volumes, model.tr, rng))
        self.sd = np.sqrt(sum(
            ((feats[idx] - feats[idx].mean(axis=0)) ** 2).sum(axis=0)
            for idx in [np.flatnonzero(np.array(site_of, dtype=object) == s) for s in sites]
        ) / (n_timeseries - len(sites)))
        self.a2 = gamma_draws(p.global_mean, p.global_sd, n_draws, rng)
        loadings = np.stack([model.site_loadings[s] for s in sites]) if sites != [None] else np.zeros((1, model.n_networks))
        self.u = loadings[np.arange(n_draws) % len(loadings)]
        self.x = rng.standard_normal((n_draws, p.mix_dof))
        self.e = rng.standard_normal((n_draws, p.mix_dof))
        self.x -= self.x.mean(axis=1, keepdims=True)
        self.e -= self.e.mean(axis=1, keepdims=True)
        self.rows, self.cols = np.triu_indices(model.n_networks, 1)

    def mean_z(self, k: int, rho: float) -> float:
        """Expected Fisher z of feature ``k`` when its group correlation is ``rho``."""
        w = self.model.params.mix_weight
        y = rho * self.x + np.sqrt(max(1 - rho**2, 0.0)) * self.e
        w_ij = (self.x * y).sum(axis=1) / np.sqrt((self.x**2).sum(axis=1) * (y**2).sum(axis=1))
        c = (1 - w) * rho + w * w_ij
        ui, uj = self.u[:, self.rows[k]], self.u[:, self.cols[k]]
        r = (c + self.a2 + ui * uj) / np.sqrt((1 + self.a2 + ui**2) * (1 + self.a2 + uj**2))
        return float(np.mean(np.arctanh(np.clip(r, -1 + 1e-7, 1 - 1e-7))))

    def d_of(self, k: int, base: float, delta: float) -> float:
        """Cohen's d of feature ``k`` when its group correlation moves from ``base`` by ``delta``."""
        return (self.mean_z(k, base + delta) - self.mean_z(k, base)) / self.sd[k]

    def delta_for(self, k: int, base: float, d: float, limit: float = 0.95) -> float | None:
        """Change of the group correlation giving Cohen's d ``d`` (signed), or None when out of reach."""
        sign = np.sign(d)
        end = sign * limit - base
        if sign * end <= 0 or abs(self.d_of(k, base, end)) < abs(d):
            return None
        return float(brentq(lambda t: self.d_of(k, base, t) - d, 0.0, end, xtol=1e-5))


# -- building the population --------------------------------------------------------------------

def _min_eig(matrix: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(matrix).min())


def build_population(control: np.ndarray, groups: Sequence[str], sites: Sequence[str], rng: np.random.Generator,
                     *, effect_d: float = 1.0, effect: float | None = None, n_specific: int = 6,
                     n_shared: int = 2, n_volumes: int = 200, tr: float = 2.0,
                     site_strength: float | None = None, params: PopulationParams | None = None,
                     estimate_d: bool = True) -> PopulationModel:
    """Plant disorder and covariate effects on ``control`` and draw site loadings.

    Parameters
    ----------
    control : ndarray, shape (n_networks, n_networks)
        Control group correlation (e.g. :func:`nmflow.simulate.networks.control_correlation`).
    groups : sequence of str
        Patient groups.
    sites : sequence of str
        Site names (loadings ``site_strength * N(0, 1)`` per network).
    effect_d : float
        Median subject-level Cohen's d of a planted connection (see the module docstring);
        per connection ``effect_d * lognormal(0, params.d_spread)`` clipped to
        ``params.d_clip * effect_d``; a shared connection has one d for all groups.
    effect : float or None
        When given, the delta mode: every planted group correlation moves by exactly ``effect``.
    n_specific, n_shared : int
        Planted connections per group only in that group / common to all groups.
    n_volumes, tr : int, float
        Scan length (volumes) and TR (s) the d calibration assumes.
    site_strength : float or None
        SD of the site loadings (default ``params.site_strength``).
    estimate_d : bool
        Add the Monte-Carlo ``d_realised`` column (and d of the covariate effects).

    Raises
    ------
    PlantingError
        When the layout cannot be planted without breaking positive definiteness.
    """
    params = params or PopulationParams()
    if site_strength is not None:
        params = PopulationParams(**{**vars(params), "site_strength": float(site_strength)})
    n = control.shape[0]
    rows, cols = np.triu_indices(n, 1)
    n_needed = n_shared + n_specific * len(groups) + params.n_age + params.n_sex
    if n_needed > rows.size:
        raise PlantingError(f"{n_needed} planted and covariate connections requested but the atlas has only "
                            f"{rows.size}: lower --n-specific/--n-shared or the number of patient groups")
    loadings = {s: params.site_strength * rng.standard_normal(n) for s in sorted(set(sites))}
    model = PopulationModel(control=control, group_corr={"control": control}, planted=pd.DataFrame(),
                            covariates=pd.DataFrame(columns=["covariate", "connection", "i", "j", "delta"]),
                            site_loadings=loadings, params=params, n_volumes=n_volumes, tr=tr)
    calib = Calibrator(model, rng) if effect is None else None
    candidates = list(rng.permutation(rows.size))
    direction = np.where(control[rows, cols] > 0.25, -1.0, 1.0)

    def size_of(k: int, d: float) -> float | None:
        if effect is not None:
            return float(direction[k] * effect)
        return calib.delta_for(k, control[rows[k], cols[k]], direction[k] * d)

    # the planted d values are the quantiles (k + 0.5) / n of effect_d * lognormal(0, d_spread), clipped,
    # in random order: their median is effect_d in every cohort, not only on average
    n_planted = n_shared + n_specific * len(groups)
    quantiles = norm.ppf((np.arange(n_planted) + 0.5) / max(n_planted, 1))
    d_values = list(effect_d * np.clip(np.exp(params.d_spread * quantiles), *params.d_clip)[rng.permutation(n_planted)])

    def draw_d() -> float:
        return float(d_values[0])

    def take(bases: list[np.ndarray], count: int, what: str) -> tuple[list[tuple[int, float, float]], list[np.ndarray]]:
        chosen = []
        for k in list(candidates):
            if len(chosen) == count:
                break
            d = draw_d() if effect is None else float("nan")
            delta = size_of(k, d)
            if delta is None or abs(control[rows[k], cols[k]] + delta) >= 0.99:
                continue
            trial = []
            for b in bases:
                m = b.copy()
                m[rows[k], cols[k]] = m[cols[k], rows[k]] = control[rows[k], cols[k]] + delta
                trial.append(m)
            if all(_min_eig(m + off) >= params.min_eig for m in trial for off in offsets):
                if effect is None:
                    d_values.pop(0)
                chosen.append((k, delta, d))
                candidates.remove(k)
                bases = trial
        if len(chosen) < count:
            size = f"d = {effect_d:g}" if effect is None else f"delta = {effect:g}"
            raise PlantingError(
                f"cannot plant {count} {what} connections of {size} and keep the group matrices positive "
                f"definite: lower --n-specific/--n-shared or the effect size")
        return chosen, bases

    model.covariates = _plant_covariates(model, candidates, rows, cols)
    corners = [((a - AGE_CENTRE) / 10, s) for a in (20.0, 70.0) for s in (-0.5, 0.5)]
    offsets = [x * model.covariate_matrix("age") + s * model.covariate_matrix("sex") for x, s in corners]
    shared, shared_bases = take([control] * len(groups), n_shared, "shared")
    records = []
    for name, base in zip(groups, shared_bases):
        specific, (corr,) = take([base], n_specific, f"specific ({name})")
        model.group_corr[name] = corr
        for kind, items in [("shared", shared), ("specific", specific)]:
            for k, delta, d in items:
                records.append({"group": name, "connection": int(k), "i": int(rows[k]), "j": int(cols[k]),
                                "kind": kind, "delta": round(float(delta), 4),
                                "d": round(float(np.sign(delta) * d), 3)})
    model.planted = pd.DataFrame.from_records(
        records, columns=["group", "connection", "i", "j", "kind", "delta", "d"])
    if estimate_d:
        model.planted["d_realised"], model.covariates["d"] = _estimate_d(model, rng)
    return model


def _plant_covariates(model: PopulationModel, candidates: list[int], rows, cols) -> pd.DataFrame:
    """Age and sex effects on connections taken before the disorder effects; the control matrix
    stays positive definite at the extreme ages (20 and 70 years) and both sexes (the matrix is
    affine in age, so the extremes bound the smallest eigenvalue); disorder effects are then
    planted only where these four corners stay positive definite too."""
    p = model.params
    records = []
    mats = {"age": np.zeros_like(model.control), "sex": np.zeros_like(model.control)}
    corners = [((a - AGE_CENTRE) / 10, s) for a in (20.0, 70.0) for s in (-0.5, 0.5)]
    for name, count, size, unit in [("age", p.n_age, p.age_delta, "per decade (centred at 45 years)"),
                                    ("sex", p.n_sex, p.sex_delta, "female minus male")]:
        taken = 0
        for k in list(candidates):
            if taken == count:
                break
            sign = -1.0 if (name == "age") == (taken % 2 == 0) else 1.0
            trial = mats[name].copy()
            trial[rows[k], cols[k]] = trial[cols[k], rows[k]] = sign * size
            new = {**mats, name: trial}
            if all(_min_eig(g + x * new["age"] + s * new["sex"]) >= model.params.min_eig
                   for g in model.group_corr.values() for x, s in corners):
                mats = new
                candidates.remove(k)
                taken += 1
                records.append({"covariate": name, "connection": int(k), "i": int(rows[k]), "j": int(cols[k]),
                                "delta": sign * size, "unit": unit})
        if taken < count:
            raise PlantingError(f"cannot add {count} {name} effects and keep the group matrices positive definite: "
                                "lower --n-specific/--n-shared")
    return pd.DataFrame.from_records(records, columns=["covariate", "connection", "i", "j", "delta", "unit"])


def _estimate_d(model: PopulationModel, rng: np.random.Generator, n_per_group: int = 300):
    """Monte-Carlo Cohen's d of the planted connections (per group) and of one covariate unit."""
    sites = sorted(model.site_loadings) or ["site"]
    loadings = model.site_loadings or {"site": np.zeros(model.n_networks)}
    groups = ["control"] + [g for g in model.group_corr if g != "control"]
    labels = np.repeat(groups, n_per_group)
    site_of = np.array([sites[k % len(sites)] for k in range(labels.size)])
    ages = rng.uniform(20, 70, labels.size)
    sexes = rng.choice(["F", "M"], labels.size)
    m = PopulationModel(**{**vars(model), "site_loadings": loadings})
    feats = fisher_features(subject_timeseries(draw_subjects(m, labels, ages, sexes, site_of, rng),
                                               model.n_volumes, model.tr, rng))
    d = {g: cohens_d(feats, labels, site_of, g) for g in groups[1:]}
    planted = [round(float(d[row.group][row.connection]), 3) for row in model.planted.itertuples()]
    ctrl = labels == "control"
    cov_d = []
    for row in model.covariates.itertuples():
        x = (ages[ctrl] - AGE_CENTRE) / 10 if row.covariate == "age" else (sexes[ctrl] == "F").astype(float)
        y = feats[ctrl, row.connection]
        design = np.column_stack([np.ones(x.size), x, *(site_of[ctrl][:, None] == np.array(sites[1:])).T])
        beta, res, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid_sd = np.sqrt(((y - design @ beta) ** 2).sum() / (y.size - design.shape[1]))
        cov_d.append(round(float(beta[1] / resid_sd), 3))
    return planted, cov_d
