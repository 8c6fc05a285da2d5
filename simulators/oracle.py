"""The ground-truth response model, vectorised over slates.

For user u with long-term interest ``u``, current intent vector ``s(t)``, scenario ``sc``
and item ``i`` at position ``p`` (0-based):

    a        = <w_long(sc) u + w_intent(sc) s(t), v_i> + specific(sc) <P_sc u, v_i>
    logit    = b_sc + beta a + gamma quality_i + pop_weight logpop_i + bias_u - fatigue - satiation
    P(click) = (1 + p)^(-decay_sc) * sigmoid(logit)          (examination x attraction)
    P(conv | click) = sigmoid(b_cv + c_u + beta_cv a - price_sens_u price_i / 4) * (1 - exp(-W / D))
    delay ~ Exp(mean D hours), counted when delay <= W (attribution window)
    dwell | click ~ LogNormal(dwell_mu + dwell_slope a, dwell_sigma)

``P_sc`` is a fixed random d x d matrix per scenario: the scenario-specific part of the
label function (SSIM's signal).  ``specific`` is 0 when ``scenario_specific`` is off, and
only items of a fixed ``specific_share`` of the categories carry it (the others are
"shareable": the same label function in every scenario up to the base rate).  With
``specific_features`` the part is a function of what a model sees instead,
``specific(sc) (T_sc[age_u, c_i] + T_sc[city_u, c_i])`` (``c_i``: the parent category of the
item's category, or with ``specific_feature_level = "category"`` the category itself; tables
of sd ``specific_feature_sd / sqrt 2``).  ``shared_segment`` (SSIM's dial) picks that share of
the (age, gender, city) profile cells: their users follow the specific part of
``segment_scenario`` in every scenario, so their rows of any scenario are worth sharing
with that scenario's model (and with each other), the other users' rows are not.  ``bias_u``
is a per-user click propensity (``response.user_click_bias_sd``, 0 by default).
Every exposure logs its true P(click) and P(convert within window | click).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simab.simulators import rng, streams
from simab.simulators.catalog import Catalog
from simab.simulators.population import PROFILE_SIZES
from simab.simulators.spec import WorldSpec
from simab.simulators.streams import Stream


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Response:
    p_click: np.ndarray  # [B, C]
    p_convert: np.ndarray  # [B, C] P(convert within window | click)
    affinity: np.ndarray  # [B, C]
    clicked: np.ndarray  # [B, C] bool
    converted: np.ndarray  # [B, C] bool
    delay_s: np.ndarray  # [B, C] conversion delay (inf where not converted)
    dwell_s: np.ndarray  # [B, C] 0 where not clicked
    expected_dwell_s: np.ndarray  # [B, C] E[dwell | click]


class Oracle:
    def __init__(self, spec: WorldSpec, seed: int, catalog: Catalog, phase: str = "campaign"):
        self.spec, self.catalog = spec, catalog
        sc = list(spec.scenarios.values())
        self.base = np.array([s.base_logit for s in sc])
        self.decay = np.array([s.position_decay for s in sc])
        self.w_long = np.array([s.w_long for s in sc])
        self.w_intent = np.array([s.w_intent for s in sc])
        self.specific = np.array([s.specific if spec.scenario_specific else 0.0 for s in sc])
        g = rng.generator(seed, Stream.ORACLE_SPECIFIC, 0)
        d = spec.dim
        self.P = g.standard_normal((len(sc), d, d)) / np.sqrt(d)
        K = catalog.n_categories
        # the categories whose preference is scenario-specific: a fixed subset (own stream)
        self.specific_categories = np.ones(K, bool)
        if spec.specific_share < 1.0:
            order = rng.generator(seed, Stream.ORACLE_SPECIFIC_CATEGORIES, 0).permutation(K)
            self.specific_categories = np.zeros(K, bool)
            self.specific_categories[order[: int(round(spec.specific_share * K))]] = True
        self._specific_item = (None if self.specific_categories.all()
                               else self.specific_categories[catalog.category].astype(np.float64))
        # each table and the segment from its own stream: the default world's draws are untouched
        self.feature_tables: tuple[np.ndarray, np.ndarray] | None = None
        self.feature_key: np.ndarray | None = None
        if spec.specific_features:
            gt = rng.generator(seed, Stream.ORACLE_SPECIFIC_FEATURES, 0)
            sd = spec.specific_feature_sd / np.sqrt(2.0)
            #: the key of an item's column in the tables: its parent category or its category
            self.feature_key = (catalog.parent_of if spec.specific_feature_level == "parent"
                                else np.arange(K))[catalog.category]
            n_keys = spec.n_parents if spec.specific_feature_level == "parent" else K
            self.feature_tables = (sd * gt.standard_normal((len(sc), PROFILE_SIZES[0], n_keys)),
                                   sd * gt.standard_normal((len(sc), PROFILE_SIZES[2], n_keys)))
        names = list(spec.scenarios)
        self.segment_scenario = (names.index(spec.segment_scenario) if spec.segment_scenario
                                 else int(np.argmin([s.traffic for s in sc])))
        n_cells = PROFILE_SIZES[0] * PROFILE_SIZES[1] * PROFILE_SIZES[2]
        self.segment_cells = np.zeros(n_cells, bool)
        if spec.shared_segment > 0:
            order = rng.generator(seed, Stream.ORACLE_SEGMENT, 0).permutation(n_cells)
            self.segment_cells[order[: int(round(spec.shared_segment * n_cells))]] = True
        r = spec.response
        self.window_factor = 1.0 - np.exp(-r.attribution_window_h / r.delay_mean_h)
        self._keys = {s: rng.stream_key(seed, rng.phase_stream(phase, s))
                      for s in (Stream.RESPONSE_CLICK, Stream.RESPONSE_CONV, Stream.RESPONSE_DELAY, Stream.RESPONSE_DWELL)}

    def examination(self, scenario: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """P(examine | position, scenario) = (1 + p)^-decay; ``scenario`` [B], positions [B, C]."""
        return (1.0 + positions) ** (-self.decay[scenario][:, None])

    @property
    def needs_profile(self) -> bool:
        """Whether the label function reads the user's profile (``affinity``'s ``profile``)."""
        return self.feature_tables is not None or bool(self.segment_cells.any())

    def in_segment(self, profile: np.ndarray) -> np.ndarray:
        """Whether users of ``profile [B, 4]`` belong to the shared segment (``shared_segment``)."""
        cell = (profile[:, 0] * PROFILE_SIZES[1] + profile[:, 1]) * PROFILE_SIZES[2] + profile[:, 2]
        return self.segment_cells[cell]

    def affinity(self, u: np.ndarray, intent: np.ndarray, scenario: np.ndarray, items: np.ndarray,
                 profile: np.ndarray | None = None) -> np.ndarray:
        """The affinity ``a`` of each (user, item) ``[B, C]``; ``profile [B, 4]`` is needed
        when ``needs_profile`` (the specific part reads the profile or the segment)."""
        v = self.catalog.latent[items]  # [B, C, d]
        pref = self.w_long[scenario][:, None] * u + self.w_intent[scenario][:, None] * intent
        shared = np.einsum("bd,bcd->bc", pref, v)
        own = scenario
        if self.needs_profile:
            if profile is None:
                raise ValueError("this world's label function reads the user's profile: pass profile")
            own = np.where(self.in_segment(profile), self.segment_scenario, scenario)  # whose function
        if self.feature_tables is not None:
            cat = self.feature_key[items]
            t_age, t_city = self.feature_tables
            part = t_age[own[:, None], profile[:, 0:1], cat] + t_city[own[:, None], profile[:, 2:3], cat]
        else:
            spec_u = np.einsum("bij,bj->bi", self.P[own], u)
            part = np.einsum("bd,bcd->bc", spec_u, v)
        specific = self.specific[own][:, None] * part
        if self._specific_item is not None:
            specific = specific * self._specific_item[items]
        return shared + specific

    def click_logit(self, affinity: np.ndarray, scenario: np.ndarray, items: np.ndarray, penalty: np.ndarray,
                    click_bias: np.ndarray | None = None) -> np.ndarray:
        r, c = self.spec.response, self.catalog
        logit = (
            self.base[scenario][:, None]
            + r.beta * affinity
            + r.gamma * c.quality[items]
            + r.pop_weight * c.logpop[items]
            - penalty
        )
        return logit if click_bias is None else logit + click_bias[:, None]

    def probabilities(
        self,
        u: np.ndarray,
        intent: np.ndarray,
        scenario: np.ndarray,
        items: np.ndarray,
        positions: np.ndarray,
        penalty: np.ndarray,
        price_sensitivity: np.ndarray,
        conversion_propensity: np.ndarray,
        click_bias: np.ndarray | None = None,
        profile: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """True (P(click), P(convert within window | click), affinity) for any slate."""
        a = self.affinity(u, intent, scenario, items, profile)
        p_click = self.examination(scenario, positions) * sigmoid(self.click_logit(a, scenario, items, penalty, click_bias))
        r = self.spec.response
        cv_logit = (
            r.b_cv
            + conversion_propensity[:, None]
            + r.beta_cv * a
            - price_sensitivity[:, None] * self.catalog.price[items] / 4.0
        )
        p_conv = sigmoid(cv_logit) * self.window_factor
        return p_click, p_conv, a

    def respond(
        self,
        request_ids: np.ndarray,
        u: np.ndarray,
        intent: np.ndarray,
        scenario: np.ndarray,
        items: np.ndarray,
        penalty: np.ndarray,
        price_sensitivity: np.ndarray,
        conversion_propensity: np.ndarray,
        click_bias: np.ndarray | None = None,
        profile: np.ndarray | None = None,
    ) -> Response:
        """Draw the response to slates ``items`` [B, K] shown in order (position = column).

        Random numbers are keyed by (request id, position): the same request in two
        counterfactual worlds uses common random numbers.
        """
        B, K = items.shape
        positions = np.broadcast_to(np.arange(K), (B, K))
        p_click, p_conv, a = self.probabilities(
            u, intent, scenario, items, positions, penalty, price_sensitivity, conversion_propensity, click_bias, profile
        )
        rid = request_ids[:, None]
        pos = positions
        k = self._keys
        # one pass over the four streams; the dwell normal is Box-Muller on a counter pair
        uc, uv, ud, u1, u2 = rng.uniforms(
            (k[Stream.RESPONSE_CLICK], k[Stream.RESPONSE_CONV], k[Stream.RESPONSE_DELAY], k[Stream.RESPONSE_DWELL],
             k[Stream.RESPONSE_DWELL]), rid, streams.response_counters(pos)
        )
        clicked = uc < p_click
        r = self.spec.response
        converted = clicked & (uv < p_conv)
        # delay conditioned on landing inside the window: truncated exponential by inversion
        D = r.delay_mean_h * 3600.0
        delay = -D * np.log1p(-ud * self.window_factor)
        delay = np.where(converted, delay, np.inf)
        mu = r.dwell_mu + r.dwell_slope * a
        exp_dwell = np.exp(mu + 0.5 * r.dwell_sigma**2)
        dwell = np.where(clicked, np.exp(mu + r.dwell_sigma * rng.box_muller(u1, u2)), 0.0)
        return Response(p_click, p_conv, a, clicked, converted, delay, dwell, exp_dwell)
