"""Hadron-air collisions from ``chromo`` (SIBYLL-2.3d by default).

Air is N14 (79 %) and O16 (21 %) by number of nuclei (argon folded into nitrogen: SIBYLL
rejects Ar40). Hadron-air production cross sections come from the model itself
(``model.cross_section``), tabulated once per process on a log-energy grid. The model is a
Fortran singleton, so each process holds exactly one instance (``get_model``).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

AIR_COMPONENTS: tuple[tuple[str, int, float], ...] = (("N14", 14, 0.79), ("O16", 16, 0.21))
TARGET_MASS_NUMBER = {name: mass for name, mass, _ in AIR_COMPONENTS}
ATOMIC_MASS_UNIT_G = 1.66053907e-24
MILLIBARN_CM2 = 1e-27
#: Minimum lab energy at which the models are used: sqrt(s) >= 10 GeV (chromo's limit).
MIN_LAB_ENERGY_GEV = 60.0

#: ``--interaction-model`` names and the chromo classes they select.
MODEL_CLASSES = {
    "SIBYLL-2.3d": "Sibyll23d",
    "SIBYLL-2.3e": "Sibyll23e",
    "SIBYLL-2.3c": "Sibyll23c",
    "SIBYLL-2.1": "Sibyll21",
    "EPOS-LHC": "EposLHC",
    "QGSJet-II-04": "QGSJetII04",
    "QGSJet-III": "QGSJet3",
    "DPMJET-III-19.3": "DpmjetIII193",
}
#: Particles that leave a collision and that the cascade follows (the model decays the
#: rest: K0S, hyperons, resonances). Muons (from prompt decays inside the model) are kept.
FOLLOWED_PIDS = (13, -13, 211, -211, 321, -321, 130, 2212, -2212, 2112, -2112)
#: Collisions per block of :meth:`AirInteractions.collide_many` (records of ~60 rows each).
_BLOCK = 512
#: Largest |particle code| of SIBYLL 2.3 (its S_CHP tables have 99 entries).
SIBYLL_MAX_CODE = 99
#: Range of SIBYLL's particle-list codes (decayed particles: code +- 10000) and the mark of
#: codes outside SIBYLL's tables in ``_followed_of_llist``.
_LLIST_OFFSET = 10000 + SIBYLL_MAX_CODE
_UNKNOWN_CODE = np.iinfo(np.int64).min
#: Cross-section table projectiles; other followed hadrons map onto these.
XS_PROJECTILE = {211: 211, 321: 321, 130: 130, 2212: 2212, 2112: 2112}
#: Unstable hadrons that CORSIKA 7 tracks through the atmosphere as particles of their own
#: (decay in flight or interaction, whichever comes first) while the model would decay them at
#: the vertex: K0S, the weakly decaying hyperons and the charmed hadrons (Heck et al., FZKA 6019
#: (1998), table 1 and sec. 3; CORSIKA user's guide, particle codes 16, 18-32, 116-200).
#: With a SIBYLL 2.3 model (version 4) the cascade does the same: they leave the collisions,
#: interact through SIBYLL with their own projectile id, and decay with SIBYLL's own decay
#: tables (``DECPAR``). Omega- is left to the vertex (SIBYLL 2.3d rejects it as a projectile:
#: "SIB_MAIN: unknown beam particle"); Sigma0 decays electromagnetically (7e-20 s).
TRACKED_UNSTABLE_PIDS = (310, 3122, 3222, 3112, 3322, 3312, 411, 421, 431, 4122, 4232, 4132, 4332)
#: Their interaction lengths: the kaon-air table for strange and charmed mesons (SIBYLL's own
#: cross-section class of K0S is the kaon one, chromo ``_cross_section_projectiles``), the
#: nucleon-air table for hyperons and charmed baryons.
TRACKED_XS = {pid: (130 if pid == 310 else 321 if pid < 1000 else 2212) for pid in TRACKED_UNSTABLE_PIDS}


def model_class(name: str):
    """The chromo model class for ``name`` (our name or a chromo class name)."""
    import chromo.models

    class_name = MODEL_CLASSES.get(name, name)
    if not hasattr(chromo.models, class_name):
        known = ", ".join(MODEL_CLASSES)
        raise ValueError(f"unknown --interaction-model {name!r} (known: {known})")
    return getattr(chromo.models, class_name)


@dataclass
class AirInteractions:
    """One chromo model instance plus its hadron-air cross-section table."""

    model: object
    log_energy_grid: np.ndarray  # (G,) log10 E_lab / GeV
    lambda_table: dict[int, np.ndarray]  # |pid| -> (G,) interaction length in g/cm^2
    target_n14_probability: dict[int, np.ndarray]  # |pid| -> (G,) P(target = N14)
    checked_beams: set = field(default_factory=set)  # (pid, target) pairs chromo accepted
    #: SIBYLL fast path: pid -> (SIBYLL production id, projectile mass GeV); None = generic path
    sibyll_beams: dict | None = None
    #: reused (codes, momenta) record buffers of the SIBYLL path (``_record_buffers``)
    record_buffers: tuple | None = None
    #: unstable hadrons the cascade tracks itself (``TRACKED_UNSTABLE_PIDS`` and antiparticles;
    #: empty for models without the SIBYLL fast path: they decay at the vertex there)
    tracked: tuple = ()
    #: followed[|pid|] look-up of the particles that leave a collision (``FOLLOWED_PIDS`` + tracked)
    followed: np.ndarray | None = None

    def interaction_length(self, abs_pid: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """Interaction length (g/cm^2) in air for |pid| (N,) at lab energy (N,) GeV."""
        out = np.full(abs_pid.shape, np.inf)
        log_e = np.log10(np.maximum(energy, 1e-3))
        for pid, table in self.lambda_table.items():
            chosen = abs_pid == pid
            if chosen.any():
                out[chosen] = np.interp(log_e[chosen], self.log_energy_grid, table)
        return out

    def collide(self, pid: int, energy: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """One collision of ``pid`` at lab energy ``energy`` (GeV) with an air nucleus.

        Returns final-state (pid, energy GeV, px, py, pz GeV) arrays of the followed particles,
        in the lab frame with z along the projectile.
        """
        pid_out, energy_out, px, py, pz, _ = final_states_lab([self.collide_raw(pid, energy, rng)], self.followed)
        return pid_out, energy_out, px, py, pz

    def collide_raw(self, pid: int, energy: float, rng: np.random.Generator) -> tuple:
        """One collision, unfiltered: (pid (n,), status (n,), momenta (n, 4) px py pz E in the
        generator frame, gamma, beta_gamma of the boost to the lab). Copies of the record, so
        many collisions can be filtered and boosted at once (:func:`final_states_lab`); the
        per-collision numpy calls cost more than SIBYLL itself on small events."""
        table = TRACKED_XS.get(abs(pid), abs(pid))
        p_n14 = np.interp(np.log10(energy), self.log_energy_grid, self.target_n14_probability[table])
        target = "N14" if rng.random() < p_n14 else "O16"
        if self.sibyll_beams is not None and pid in self.sibyll_beams:
            return self._collide_sibyll(pid, energy, target)
        return self._collide_generic(pid, energy, target)

    def _collide_generic(self, pid: int, energy: float, target: str) -> tuple:
        """:meth:`collide_raw` on ``target`` ("N14" or "O16") through chromo's generator steps."""
        from chromo.kinematics import FixedTarget

        kinematics = FixedTarget(float(energy), int(pid), target)
        # The public path (``model.kinematics = kin; next(model(1))``) recomputes the cross
        # section on every energy change, re-validates decays and builds a full event record;
        # that is ~75 % of the CPU time per collision (measured 1.25 ms -> 0.32 ms, identical
        # particles). The table above already holds the cross section and the followed
        # particles are fixed, so we drive chromo's generator steps directly.
        model = self.model
        if (pid, target) not in self.checked_beams:  # projectile/target support: once per pair
            model._check_kinematics(kinematics)
            self.checked_beams.add((pid, target))
        model._kinematics = kinematics
        model._set_kinematics(kinematics)
        for _attempt in range(1000):
            if model._generate():
                break
        else:
            raise RuntimeError(f"{model.label}: 1000 failed attempts for {pid} at {energy:g} GeV")
        from chromo.kinematics import EventFrame

        if model._frame == EventFrame.CENTER_OF_MASS:
            return (*_raw_hepevt(model), kinematics._gamma_cm, kinematics._betagamma_cm)
        return (*_raw_hepevt(model), 1.0, 0.0)

    def _collide_sibyll(self, pid: int, energy: float, target: str) -> tuple:
        """SIBYLL without chromo's kinematics object: building ``FixedTarget`` (PDG look-ups
        through ``particle``) cost more CPU than the collision itself. Calls exactly what
        ``SIBYLLRun._generate`` calls (``sibyll(id, A, ecm)``, ``decsib``, ``sibhep``) with
        chromo's own kinematics formulas (``util.elab2ecm``, ``gamma_cm = (E + m2) / ecm``,
        ``betagamma_cm = p / ecm``, m2 the nucleon mass for a nuclear target), so the particles are
        identical to the generic path (``tests/test_sim_lengths.py``)."""
        production_id, m1 = self.sibyll_beams[pid]
        m2 = self.sibyll_beams["nucleon_mass"]
        ecm = math.sqrt(m1 * m1 + m2 * m2 + 2.0 * energy * m2)
        lib = self.model._lib
        lib.sibyll(production_id, TARGET_MASS_NUMBER[target], ecm)  # SIBYLLRun._generate never fails
        lib.decsib()
        lib.sibhep()
        plab = math.sqrt(max(energy * energy - m1 * m1, 0.0))
        return (*_raw_hepevt(self.model), (energy + m2) / ecm, plab / ecm)

    def collide_many(self, pid: np.ndarray, energy: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Collisions of N projectiles (pid (N,) PDG ids of followed hadrons, energy (N,) lab GeV)
        with air nuclei, in the given order.

        Returns :func:`final_states_lab` of the N collisions: (pid, energy, px, py, pz, collision
        index), each (M,). Bit-identical to ``final_states_lab([collide_raw(p, e, rng) ...])``
        (``tests/test_sim_collisions.py``): the targets take the same uniforms from ``rng`` (one per
        collision, in order; ``rng.random(N)`` gives the values of N calls of ``rng.random()``),
        the model sees the same calls in the same order. What differs is the Python around
        SIBYLL: targets, centre-of-mass energies and boosts are computed for all N at once, the
        loop only calls ``sibyll`` and ``decsib`` and copies SIBYLL's particle list, which is
        converted, filtered and boosted per block of collisions (:meth:`_sibyll_block`). CPU
        per collision of a 1e9 GeV shower: 62 -> 46 us, of which ~35 us inside SIBYLL
        (docs/simulator.md, Performance).
        """
        pid = np.asarray(pid, np.int64)
        energy = np.asarray(energy, np.float64)
        n = pid.size
        if n == 0:
            return final_states_lab([])
        abs_pid = np.abs(pid)
        p_n14 = np.empty(n)
        for table_pid in np.unique(abs_pid).tolist():
            chosen = abs_pid == table_pid
            p_n14[chosen] = np.interp(np.log10(energy[chosen]), self.log_energy_grid, self.target_n14_probability[TRACKED_XS.get(table_pid, table_pid)])
        is_n14 = rng.random(n) < p_n14
        beams = self.sibyll_beams
        fast = np.zeros(n, bool)
        production_id = np.zeros(n, np.int64)
        m1 = np.zeros(n)
        if beams is not None:
            for beam_pid in np.unique(pid).tolist():
                if beam_pid in beams:
                    chosen = pid == beam_pid
                    fast[chosen] = True
                    production_id[chosen], m1[chosen] = beams[beam_pid]
        if not fast.all():  # other models (or a projectile SIBYLL has no id for): one by one
            targets = np.where(is_n14, "N14", "O16").tolist()
            return final_states_lab([
                self._collide_sibyll(p, e, t) if f else self._collide_generic(p, e, t)
                for p, e, t, f in zip(pid.tolist(), energy.tolist(), targets, fast.tolist())
            ], self.followed)
        m2 = beams["nucleon_mass"]
        # the same floating-point operations, in the same order, as _collide_sibyll
        ecm = np.sqrt(m1 * m1 + m2 * m2 + 2.0 * energy * m2)
        gamma = (energy + m2) / ecm
        beta_gamma = np.sqrt(np.maximum(energy * energy - m1 * m1, 0.0)) / ecm
        mass_number = np.where(is_n14, TARGET_MASS_NUMBER["N14"], TARGET_MASS_NUMBER["O16"])
        # blocks of collisions keep the copied records in the CPU cache (a whole generation
        # of a 1e9 GeV shower is ~1e6 rows, 40 MB) and are then filtered and boosted at once
        parts = [
            self._sibyll_block(production_id[start:start + _BLOCK], mass_number[start:start + _BLOCK], ecm[start:start + _BLOCK],
                               gamma[start:start + _BLOCK], beta_gamma[start:start + _BLOCK], start)
            for start in range(0, n, _BLOCK)
        ]
        return tuple(np.concatenate(column) for column in zip(*parts))

    def _sibyll_block(self, production_id: np.ndarray, mass_number: np.ndarray, ecm: np.ndarray,
                      gamma: np.ndarray, beta_gamma: np.ndarray, first: int) -> tuple[np.ndarray, ...]:
        """:meth:`collide_many` of B collisions on SIBYLL (production id, target A, ecm GeV,
        boost gamma and beta_gamma: (B,) each); collision indices start at ``first``."""
        lib = self.model._lib
        sibyll, decsib = lib.sibyll, lib.decsib
        plist = lib.s_plist  # SIBYLL's particle stack, read without sibhep (see below)
        codes_now, momenta_now = plist.llist, plist.p
        # the records of the block go into reused buffers (one small array per collision and
        # a concatenation cost ~1 us more per collision)
        codes_buffer, momenta_buffer = self._record_buffers(0, 0)
        sizes = []
        filled = 0
        for code, a, e in zip(production_id.tolist(), mass_number.tolist(), ecm.tolist()):
            sibyll(code, a, e)  # SIBYLLRun._generate never fails
            decsib()
            k = int(plist.np)
            end = filled + k
            if end > codes_buffer.size:
                codes_buffer, momenta_buffer = self._record_buffers(end, filled)
            codes_buffer[filled:end] = codes_now[:k]
            momenta_buffer[filled:end] = momenta_now[:k, :4]
            sizes.append(k)
            filled = end
        # chromo's ``sibhep`` (its sibyll/sibhep.f) copies S_PLIST into HEPEVT row by row:
        # ISTHEP = 1 if |LLIST| < 10000 else 2 (decayed), IDHEP = ISIB_PID2PDG(MOD(LLIST, 10000)),
        # PHEP(1:4, i) = P(i, 1:4). The same in one table look-up (``_followed_of_llist``).
        code = codes_buffer[:filled]
        if code.min() < -_LLIST_OFFSET or code.max() > _LLIST_OFFSET:
            bad = code[np.abs(code) > _LLIST_OFFSET][0]
            raise RuntimeError(f"SIBYLL produced particle code {int(bad)}, outside its table of codes (|code| <= {SIBYLL_MAX_CODE})")
        pid_all = np.take(self.sibyll_beams["followed_of_llist"], code + _LLIST_OFFSET)
        if (pid_all == _UNKNOWN_CODE).any():
            bad = code[pid_all == _UNKNOWN_CODE][0]
            raise RuntimeError(f"SIBYLL produced particle code {int(bad)}, outside its table of codes (|code| <= {SIBYLL_MAX_CODE})")
        keep = pid_all != 0
        pid, energy, px, py, pz, collision = _final_states_lab(pid_all, keep, momenta_buffer[:filled], np.asarray(sizes), gamma, beta_gamma)
        return pid, energy, px, py, pz, collision + first

    def _record_buffers(self, needed: int, filled: int) -> tuple[np.ndarray, np.ndarray]:
        """The reused record buffers of :meth:`_sibyll_block` (codes (R,) int32, momenta (R, 4)),
        grown to hold at least ``needed`` rows while keeping the first ``filled`` ones."""
        if self.record_buffers is None:
            self.record_buffers = (np.empty(1 << 16, np.int32), np.empty((1 << 16, 4)))
        codes, momenta = self.record_buffers
        if needed > codes.size:
            size = max(needed, 2 * codes.size)
            grown_codes, grown_momenta = np.empty(size, np.int32), np.empty((size, 4))
            grown_codes[:filled], grown_momenta[:filled] = codes[:filled], momenta[:filled]
            codes, momenta = grown_codes, grown_momenta
            self.record_buffers = (codes, momenta)
        return codes, momenta
    def decay_in_flight(self, pid: int, energy: float, slope_x: float, slope_y: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Decay of one tracked unstable hadron (``self.tracked``) of lab ``energy`` (GeV) moving
        along (slope_x, slope_y, 1), with the model's own decay tables (SIBYLL ``DECPAR``, lab
        frame), as the model would have decayed it at the vertex. Unstable daughters that are
        neither followed nor tracked (resonances, eta, ...) are decayed further the same way;
        a K0 / K0bar daughter becomes K0S or K0L with probability 1/2 each (CP eigenstates);
        photons, leptons other than muons and pi0 are dropped. Returns (pid, energy GeV,
        slope_x, slope_y) of the followed and tracked daughters, each (D,)."""
        lib = self.model._lib
        idb = lib.s_csydec.idb
        production_id, mass = self.sibyll_beams[pid]
        momentum = math.sqrt(max(energy * energy - mass * mass, 0.0))
        norm = math.sqrt(1.0 + slope_x * slope_x + slope_y * slope_y)
        p0 = np.array([momentum * slope_x / norm, momentum * slope_y / norm, momentum / norm, energy, mass])
        pending, out = [(production_id, p0)], []
        while pending:
            code, four = pending.pop()
            entry = abs(code) - 1
            stable_flag = idb[entry]
            idb[entry] = abs(stable_flag)  # tracked particles are stable for the vertex only
            codes = np.zeros(10, np.int32)
            momenta = np.zeros((10, 5), np.float64, order="F")
            lib.decpar(code, four, 0, codes, momenta)  # fills codes / momenta in place
            idb[entry] = stable_flag
            for k in np.flatnonzero(codes):
                daughter = int(lib.isib_pid2pdg(int(codes[k])))
                if abs(daughter) == 311:
                    daughter = 310 if rng.random() < 0.5 else 130
                    codes[k] = lib.isib_pdg2pid(daughter)
                if abs(daughter) < self.followed.size and self.followed[abs(daughter)]:
                    out.append((daughter, momenta[k].copy()))
                elif abs(daughter) not in (22, 111, 11, 12, 14, 16) and idb[abs(int(codes[k])) - 1] > 0:
                    pending.append((int(codes[k]), momenta[k].copy()))
        if not out:
            empty = np.zeros(0)
            return np.zeros(0, np.int64), empty, empty, empty
        pids = np.array([d for d, _ in out], np.int64)
        momenta = np.array([m for _, m in out])
        pz = np.where(momenta[:, 2] != 0.0, momenta[:, 2], 1e-30)
        return pids, momenta[:, 3], momenta[:, 0] / pz, momenta[:, 1] / pz

    def reseed(self, seed: int) -> None:
        """Put the model's random generator into the state of ``seed`` (per-chunk determinism)."""
        bit_generator = self.model._rng.bit_generator
        bit_generator.state = type(bit_generator)(seed).state


#: followed[|pid|] (|pid| clipped to the table end): a look-up, 10x faster than np.isin here
_FOLLOWED = np.zeros(max(abs(p) for p in FOLLOWED_PIDS) + 2, bool)
_FOLLOWED[[abs(p) for p in FOLLOWED_PIDS]] = True
_HEPEVT_VIEWS: dict[int, tuple] = {}


def _hepevt_views(model) -> tuple:
    """(record, nhep name, idhep, isthep, phep) of the model's HEPEVT common block, read
    through the field names chromo's event class declares. The arrays are views of static
    Fortran memory, so they are fetched once per model instead of per collision."""
    key = id(model)
    if key not in _HEPEVT_VIEWS:
        event_class = model._event_class
        record = getattr(model._lib, event_class._hepevt)
        _HEPEVT_VIEWS[key] = (record, event_class._nhep, getattr(record, event_class._idhep),
                              getattr(record, event_class._isthep), getattr(record, event_class._phep))
    return _HEPEVT_VIEWS[key]


def _raw_hepevt(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copies of the last event's HEPEVT (pid (n,), status (n,), (n, 4) px py pz E).

    Building chromo's full ``EventData`` (beam repair, history, charges via ``particle``
    look-ups) cost 3x the collision itself and none of it is used here."""
    record, nhep, idhep, isthep, phep = _hepevt_views(model)
    n = int(getattr(record, nhep))
    return idhep[:n].copy(), isthep[:n].copy(), phep[:4, :n].T.copy()


def final_states_lab(raw: list[tuple], followed: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Followed final-state (status 1) particles of many collisions (``collide_raw`` results),
    boosted to the lab along z with each collision's (gamma, beta_gamma) (the same boost as
    chromo's ``EventKinematics.apply_boost``). Returns (pid, energy, px, py, pz, collision
    index), each (M,), in collision order. ``followed``: look-up by |pid| of the particles kept
    (``AirInteractions.followed``; default ``FOLLOWED_PIDS``)."""
    if not raw:
        empty = np.zeros(0)
        return np.zeros(0, np.int64), empty, empty, empty, empty, np.zeros(0, np.int64)
    pid = np.concatenate([r[0] for r in raw])
    status = np.concatenate([r[1] for r in raw])
    table = _FOLLOWED if followed is None else followed
    keep = table[np.minimum(np.abs(pid), np.int32(table.size - 1))] & (status == 1)
    return _final_states_lab(pid, keep, np.concatenate([r[2] for r in raw]), np.array([r[0].size for r in raw]),
                             np.array([r[3] for r in raw], np.float64), np.array([r[4] for r in raw], np.float64))


def _final_states_lab(pid: np.ndarray, keep: np.ndarray, momenta: np.ndarray, sizes: np.ndarray,
                      gamma: np.ndarray, beta_gamma: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`final_states_lab` of C collisions given as their concatenated records: pid
    (P,), keep (P,) bool (followed final-state particles), momenta (P, 4) px py pz E; sizes
    (C,) particles per collision; gamma, beta_gamma (C,) of each collision's boost to the lab."""
    rows = np.flatnonzero(keep)
    collision = np.take(np.repeat(np.arange(sizes.size), sizes), rows)
    px, py, pz, en = np.take(momenta, rows, axis=0).T  # np.take: 4x faster than momenta[rows] here
    gamma, beta_gamma = np.take(gamma, collision), np.take(beta_gamma, collision)
    energy, pz = gamma * en + beta_gamma * pz, beta_gamma * en + gamma * pz
    return np.take(pid, rows).astype(np.int64), energy, px, py, pz, collision


_INSTANCES: dict[str, AirInteractions] = {}  # Fortran models allow one instance per process


def get_model(name: str = "SIBYLL-2.3d", seed: int = 0) -> AirInteractions:
    """The process-wide model instance for ``name`` (created on first use), reseeded with ``seed``."""
    if name not in _INSTANCES:
        _INSTANCES[name] = _build(name, seed)
    instance = _INSTANCES[name]
    instance.reseed(seed)
    return instance


@contextlib.contextmanager
def _fortran_stdout_silenced():
    """Send file descriptor 1 to /dev/null: the Fortran banners would otherwise corrupt the
    output of commands (e.g. ``--json``) that print to stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _build(name: str, seed: int) -> AirInteractions:
    from chromo.kinematics import FixedTarget

    cls = model_class(name)
    try:
        with warnings.catch_warnings(), _fortran_stdout_silenced():
            warnings.simplefilter("ignore", RuntimeWarning)
            model = cls(FixedTarget(1e5, "p", "N14"), seed=seed)
    except (ConnectionError, OSError) as error:  # models with data tables download them on first use
        raise ValueError(
            f"--interaction-model {name}: chromo could not load the model's data files ({error}); "
            "on an offline machine use SIBYLL-2.3d or copy chromo's data directory by hand"
        ) from error
    tracked = _tracked_pids(model)
    model.final_state_particles = list(FOLLOWED_PIDS) + list(tracked)
    with _fortran_stdout_silenced():
        air = _tabulate(name, model)
    air.sibyll_beams = _sibyll_beams(model, tracked)
    air.tracked = tracked
    air.followed = followed_lookup(FOLLOWED_PIDS + tracked)
    return air


def followed_lookup(pids: tuple[int, ...]) -> np.ndarray:
    """Boolean look-up table indexed by |pid| (its last entry, False, stands for every larger |pid|)."""
    table = np.zeros(max(abs(p) for p in pids) + 2, bool)
    table[[abs(p) for p in pids]] = True
    return table


def _tracked_pids(model) -> tuple[int, ...]:
    """``TRACKED_UNSTABLE_PIDS`` and their antiparticles for a SIBYLL 2.3 model (fast path with
    in-flight decays through ``DECPAR``); () for other models."""
    from chromo.models.sibyll import SIBYLLRun
    from particle import Particle

    if not isinstance(model, SIBYLLRun) or getattr(model, "version", "") == "2.1":
        return ()
    out = []
    for pid in TRACKED_UNSTABLE_PIDS:
        out.append(pid)
        anti = int(Particle.from_pdgid(pid).invert().pdgid)
        if anti != pid:
            out.append(anti)
    return tuple(out)


def _sibyll_beams(model, tracked: tuple[int, ...] = ()) -> dict | None:
    """For chromo's SIBYLL 2.3 models: the production id and mass of every followed hadron
    (the fast collision path); None for other models (and SIBYLL 2.1: other ``_generate``)."""
    from chromo.constants import nucleon_mass
    from chromo.models.sibyll import SIBYLLRun
    from chromo.util import mass

    if not isinstance(model, SIBYLLRun) or getattr(model, "version", "") == "2.1":
        return None
    beams: dict = {"nucleon_mass": float(nucleon_mass)}
    for pid in FOLLOWED_PIDS + tracked:
        if abs(pid) == 13:
            continue
        production_id = int(model._lib.isib_pdg2pid(pid))
        if production_id != 0:
            beams[pid] = (production_id, float(mass(pid)))
    beams["followed_of_llist"] = _followed_of_llist(model, tracked)
    return beams


def _followed_of_llist(model, tracked: tuple[int, ...] = ()) -> np.ndarray:
    """Table over SIBYLL's particle-list codes LLIST (index LLIST + ``_LLIST_OFFSET``): the PDG id
    (chromo's ``isib_pid2pdg``, as its ``sibhep`` converts them) of a followed particle that
    SIBYLL left undecayed (|LLIST| < 10000), 0 for any other particle (decayed ones carry
    LLIST +- 10000), ``_UNKNOWN_CODE`` for codes outside SIBYLL's tables (|code| > 99)."""
    table = np.zeros(2 * _LLIST_OFFSET + 1, np.int64)
    llist = np.arange(-_LLIST_OFFSET, _LLIST_OFFSET + 1)
    sibyll_code = np.fmod(llist, 10000)  # Fortran MOD keeps the sign of LLIST
    table[np.abs(sibyll_code) > SIBYLL_MAX_CODE] = _UNKNOWN_CODE
    followed = {abs(pid) for pid in FOLLOWED_PIDS + tracked}  # by |pid|, as ``AirInteractions.followed`` selects HEPEVT rows
    for code in range(-SIBYLL_MAX_CODE, SIBYLL_MAX_CODE + 1):
        pdg = int(model._lib.isib_pid2pdg(code)) if code else 0
        if abs(pdg) in followed:
            table[code + _LLIST_OFFSET] = pdg  # stable only: the decayed code +- 10000 stays 0
    return table


def _tabulate(name: str, model) -> AirInteractions:
    from chromo.kinematics import FixedTarget

    grid = np.linspace(np.log10(MIN_LAB_ENERGY_GEV), 10.0, 45)
    lambdas, n14_probability = {}, {}
    mean_mass = sum(frac * mass for _, mass, frac in AIR_COMPONENTS)
    for pid in XS_PROJECTILE:  # tracked particles use these tables (``TRACKED_XS``)
        sigma = {
            # production cross section (inelastic minus quasi-elastic target excitation): the
            # events the model generates are production events; chromo itself uses ``prod``
            # for nuclear targets, and so does CORSIKA for the interaction length
            target: np.array([model.cross_section(FixedTarget(10.0**g, pid, target)).prod for g in grid])
            for target, _, _ in AIR_COMPONENTS
        }
        sigma_air = sum(frac * sigma[target] for target, _, frac in AIR_COMPONENTS)
        if not np.all(np.isfinite(sigma_air) & (sigma_air > 0)):
            raise RuntimeError(f"{name}: no valid {pid}-air production cross section from chromo")
        lambdas[pid] = mean_mass * ATOMIC_MASS_UNIT_G / (sigma_air * MILLIBARN_CM2)
        n14_probability[pid] = AIR_COMPONENTS[0][2] * sigma["N14"] / sigma_air
    return AirInteractions(model, grid, lambdas, n14_probability)
