"""Version of the simulator's physics, stored in every shard it writes.

Bumped whenever the physics changes the simulated muons for a given seed, so that a shard
says which simulator made it and a dataset is never continued with a different one.
History (docs/simulator.md "Versions"):

1. the first simulator (shards without a ``simulator_version`` key are version 1);
2. geomagnetic deflection of charged particles and multiple scattering of muons in air,
   random shower azimuth;
3. curved-Earth shower axes through a spherical atmosphere, the spherical overburden in the
   medium, sites and media (``sim/earth.py``, ``sim/site.py``);
4. K0S, the weakly decaying hyperons and the charmed hadrons are tracked through the air
   (decay in flight or interaction) as in CORSIKA 7, instead of decaying at the vertex
   (SIBYLL 2.3 models; ``sim/interactions.py`` ``TRACKED_UNSTABLE_PIDS``).
"""

SIMULATOR_VERSION = 4
#: what shards written before the key existed were made with
UNVERSIONED = 1
