"""US standard atmosphere, Linsley's 5-layer parameterisation, with flat-earth slant geometry.

Vertical mass overburden T(h) = a_i + b_i exp(-h / c_i) (layers 1-4) and
T(h) = a_5 - b_5 h / c_5 (layer 5), h in cm, T in g/cm^2.
Source: D. Heck et al., "CORSIKA: A Monte Carlo Code to Simulate Extensive Air Showers",
FZKA 6019 (1998), appendix D, table for "U.S. standard atmosphere as parameterized by
J. Linsley" (model 1 in the CORSIKA user's guide).

Slant depth along an axis of zenith theta is T(h) / cos(theta) here (flat earth: within 1 %
of the curved geometry up to 60 deg only). The simulator uses the curved-Earth axes of
``earth.py`` (CORSIKA's CURVED geometry), which build on :func:`vertical_depth`.
"""

from __future__ import annotations

import numpy as np

#: Lower boundaries of the five layers, cm.
LAYER_BOTTOM_CM = np.array([0.0, 4.0e5, 1.0e6, 4.0e6, 1.0e7])
#: Upper edge of the atmosphere (T = 0), cm.
TOP_CM = 1.128292e7
LINSLEY_A = np.array([-186.555305, -94.919, 0.61289, 0.0, 0.01128292])  # g/cm^2
LINSLEY_B = np.array([1222.6562, 1144.9069, 1305.5948, 540.1778, 1.0])  # g/cm^2
LINSLEY_C = np.array([994186.38, 878153.55, 636143.04, 772170.16, 1.0e9])  # cm

#: Vertical overburden at each layer's lower boundary (T is decreasing in h).
_T_AT_BOTTOM = np.array(
    [
        *(LINSLEY_A[i] + LINSLEY_B[i] * np.exp(-LAYER_BOTTOM_CM[i] / LINSLEY_C[i]) for i in range(4)),
        LINSLEY_A[4] - LINSLEY_B[4] * LAYER_BOTTOM_CM[4] / LINSLEY_C[4],
    ]
)


def vertical_depth(height_m: np.ndarray | float) -> np.ndarray:
    """Vertical overburden T (g/cm^2) above ``height_m`` (m a.s.l., any shape); 0 above the top."""
    h = np.asarray(height_m, dtype=np.float64) * 100.0
    layer = np.clip(np.searchsorted(LAYER_BOTTOM_CM, h, side="right") - 1, 0, 4)
    a, b, c = LINSLEY_A[layer], LINSLEY_B[layer], LINSLEY_C[layer]
    depth = np.where(layer < 4, a + b * np.exp(-h / c), a - b * h / c)
    return np.where(h >= TOP_CM, 0.0, depth)


def height_of_vertical_depth(depth_gcm2: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`vertical_depth`: height in m a.s.l. for overburden T (g/cm^2, any shape)."""
    t = np.asarray(depth_gcm2, dtype=np.float64)
    # layers are ordered by decreasing T at their bottom
    layer = np.clip(np.searchsorted(-_T_AT_BOTTOM, -t, side="left") - 1, 0, 4)
    a, b, c = LINSLEY_A[layer], LINSLEY_B[layer], LINSLEY_C[layer]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(layer < 4, c * np.log(b / np.maximum(t - a, 1e-300)), c * (a - t) / b)
    return np.where(t <= 0, TOP_CM, np.minimum(h, TOP_CM)) / 100.0


def slant_depth(height_m: np.ndarray | float, cos_zenith: np.ndarray | float) -> np.ndarray:
    """Slant depth (g/cm^2) along an axis with ``cos_zenith`` above ``height_m`` (flat earth)."""
    return vertical_depth(height_m) / np.asarray(cos_zenith, dtype=np.float64)


def height_of_slant_depth(slant_gcm2: np.ndarray | float, cos_zenith: np.ndarray | float) -> np.ndarray:
    """Height (m a.s.l.) where the slant depth along the axis equals ``slant_gcm2`` (flat earth)."""
    return height_of_vertical_depth(np.asarray(slant_gcm2, dtype=np.float64) * np.asarray(cos_zenith))
