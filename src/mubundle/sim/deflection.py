"""Deflections of charged particles in air: the geomagnetic field and multiple scattering.

Both act on the muons from their production point to the observation level (and the
geomagnetic field also on charged hadrons between their creation and their fate), in the
small-angle approximation used everywhere in the cascade: a particle carries a transverse
position (m) and direction slopes relative to the shower axis.

**Geomagnetic field.** A particle of charge q (units of e) and momentum p (GeV) in a field B
(T) moves on a circle of radius r = p / (0.299792458 q B_perp) m (Larmor radius; PDG 2022,
PTEP 2022 083C01, "Passage of particles through matter" / kinematics: p [GeV] = 0.3 B [T] r [m]).
Over a path L << r along the axis it turns by L / r and moves sideways by L^2 / (2 r), in the
direction q v x B. The field is uniform and constant along the path (a few hundred km of
crust-fixed field vary by far less than the other approximations here). Default: the South
Pole field that CORSIKA uses for IceCube, MAGNET 16.811 -51.890 uT (horizontal component to
magnetic north, vertical component; Heck et al., CORSIKA user's guide, "MAGNET"): only the
component perpendicular to the axis matters, i.e. the horizontal one for vertical showers.

**Multiple scattering.** Gaussian approximation with Highland's width (PDG 2022, eq. 34.15,
Lynch & Dahl NIM B58 (1991) 6): theta0 = 13.6 MeV / p * sqrt(x/X0) (1 + 0.038 ln(x/X0)) per
projected plane, X0(air) = 36.62 g/cm^2 (PDG "Atomic and nuclear properties of materials:
air, dry"). In the atmosphere the density changes along the path, so the angle and the
displacement at the observation level are the correlated Gaussian pair with
var(theta) = k F, cov = k H, var(x) = k G, where k = (13.6 MeV/p)^2 (1 + 0.038 ln(t))^2 / X0,
t = F / X0, and F = int dX, H = int s dX, G = int s^2 dX over the slant depth X between the
production point and the ground, s being the remaining distance to the ground (PDG eq. 34.16-
34.18 are the constant-density special case: F = x rho, H = x^2 rho / 2, G = x^3 rho / 3).
CORSIKA (MUMULT T) uses Moliere's theory for muons; the Gaussian core agrees with Highland's
width to ~11 % for 1e-3 < x/X0 < 100 (PDG), and the rare large-angle tail moves a TeV muon by
centimetres, far below the metres of the bundle radius.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mubundle.sim.atmosphere import LAYER_BOTTOM_CM, LINSLEY_B, LINSLEY_C, TOP_CM

#: p [GeV] = LARMOR_GEV_PER_T_M * B [T] * r [m] for unit charge (e c / 1e9).
LARMOR_GEV_PER_T_M = 0.299792458
#: CORSIKA MAGNET card of IceCube at the South Pole: horizontal (to magnetic north) and
#: vertical components in microtesla, as in the CORSIKA steering of the IceCube/PANAMA runs.
SOUTH_POLE_FIELD_UT = (16.811, -51.890)
#: Radiation length of dry air, g/cm^2 (PDG atomic and nuclear properties).
AIR_RADIATION_LENGTH_GCM2 = 36.62
#: Highland's constant, GeV (PDG 2022 eq. 34.15).
HIGHLAND_GEV = 0.0136


def field_across_axis(zenith: np.ndarray, azimuth: np.ndarray, field_ut: tuple[float, float] = SOUTH_POLE_FIELD_UT) -> tuple[np.ndarray, np.ndarray]:
    """Components (T) of v x B in the transverse frame of each shower ((S,) arrays in and out).

    v is the unit vector of motion (downward along the axis, the shower coming from
    ``azimuth``, rad, measured from magnetic north towards west as in CORSIKA);
    ``field_ut`` = (B_x to magnetic north, B_z vertical) in microtesla with CORSIKA's sign
    convention (MAGNET: B_z counted downward, so the South Pole's upward field has B_z < 0).
    The transverse frame is e1 = (cos th cos ph, cos th sin ph, -sin th), e2 = (-sin ph, cos ph, 0)
    (z up): for a vertical shower from azimuth 0, e1 = x (north) and e2 = y (west), CORSIKA's
    ground coordinates. A charge q is pushed along q (v x B).
    """
    bx, bz = (value * 1e-6 for value in field_ut)
    zenith = np.asarray(zenith, np.float64)
    azimuth = np.asarray(azimuth, np.float64)
    st, ct, sp, cp = np.sin(zenith), np.cos(zenith), np.sin(azimuth), np.cos(azimuth)
    # z axis up; CORSIKA's BZ is the downward component, so B = (bx, 0, -bz) in z-up
    b = np.array([bx, 0.0, -bz])
    v = -np.stack([st * cp, st * sp, ct], axis=-1)
    force = np.cross(v, b)
    e1 = np.stack([ct * cp, ct * sp, -st], axis=-1)
    e2 = np.stack([-sp, cp, np.zeros_like(st)], axis=-1)
    return np.einsum("...i,...i->...", force, e1), np.einsum("...i,...i->...", force, e2)


def magnetic_deflection(charge: np.ndarray, momentum_gev: np.ndarray, path_m: np.ndarray, field_1: np.ndarray, field_2: np.ndarray) -> tuple[np.ndarray, ...]:
    """(dx, dy, dslope_x, dslope_y) after a straight path ``path_m`` (m) in a uniform field.

    charge (units of e), momentum (GeV), path (m), field_1/field_2 (T, from
    :func:`field_across_axis`): all (N,). Small-angle limit of the circle: angle L / r,
    displacement L^2 / (2 r), r the Larmor radius.
    """
    curvature = LARMOR_GEV_PER_T_M * charge / np.maximum(momentum_gev, 1e-9)  # 1/(m T)
    d_angle_1, d_angle_2 = curvature * field_1 * path_m, curvature * field_2 * path_m
    return 0.5 * d_angle_1 * path_m, 0.5 * d_angle_2 * path_m, d_angle_1, d_angle_2


@dataclass(frozen=True)
class ScatteringTable:
    """Column integrals below heights h (vertical, from the ground up), for multiple scattering.

    heights_m (H,); f (H,) = int rho dh (g/cm^2); h1 (H,) = int (h - h_g) rho dh (g/cm^2 m);
    h2 (H,) = int (h - h_g)^2 rho dh (g/cm^2 m^2), all from the ground h_g to each height.
    """

    ground_m: float
    heights_m: np.ndarray
    f: np.ndarray
    h1: np.ndarray
    h2: np.ndarray

    @classmethod
    def build(cls, ground_m: float, points: int = 4000) -> "ScatteringTable":
        heights = ground_m + (TOP_CM / 100.0 - ground_m) * np.linspace(0.0, 1.0, points) ** 2
        h_cm = heights * 100.0
        layer = np.clip(np.searchsorted(LAYER_BOTTOM_CM, h_cm, side="right") - 1, 0, 4)
        b, c = LINSLEY_B[layer], LINSLEY_C[layer]
        rho = np.where(layer < 4, b / c * np.exp(-h_cm / c), b / c)  # g/cm^3
        rho_per_m = rho * 100.0  # g/cm^2 per metre of height
        s = heights - ground_m

        def cumulative(values: np.ndarray) -> np.ndarray:
            return np.concatenate([[0.0], np.cumsum(0.5 * (values[1:] + values[:-1]) * np.diff(heights))])

        return cls(float(ground_m), heights, cumulative(rho_per_m), cumulative(s * rho_per_m), cumulative(s * s * rho_per_m))


def scatter_in_air(table: ScatteringTable, height_m: np.ndarray, cos_zenith: np.ndarray, momentum_gev: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Random (dx, dy, dslope_x, dslope_y) at the ground from multiple scattering in air.

    height_m: production heights (m a.s.l.), cos_zenith, momentum (GeV): all (N,). Each
    transverse plane gets an independent correlated (angle, displacement) Gaussian pair
    (see the module docstring); the slant geometry multiplies the vertical integrals by
    1/cos (F), 1/cos^2 (H), 1/cos^3 (G).
    """
    h = np.clip(height_m, table.ground_m, table.heights_m[-1])
    f = np.interp(h, table.heights_m, table.f) / cos_zenith
    h1 = np.interp(h, table.heights_m, table.h1) / cos_zenith**2
    h2 = np.interp(h, table.heights_m, table.h2) / cos_zenith**3
    thickness = np.maximum(f / AIR_RADIATION_LENGTH_GCM2, 1e-12)
    log_term = np.maximum(1.0 + 0.038 * np.log(thickness), 0.0)
    k = (HIGHLAND_GEV / np.maximum(momentum_gev, 1e-9) * log_term) ** 2 / AIR_RADIATION_LENGTH_GCM2
    var_angle, cov, var_x = k * f, k * h1, k * h2
    sigma_angle = np.sqrt(var_angle)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(var_angle > 0, cov / var_angle, 0.0)  # regression of x on the angle
    residual = np.sqrt(np.maximum(var_x - slope * cov, 0.0))
    z = rng.standard_normal((4, h.size))
    angle_1, angle_2 = sigma_angle * z[0], sigma_angle * z[1]
    return slope * angle_1 + residual * z[2], slope * angle_2 + residual * z[3], angle_1, angle_2
