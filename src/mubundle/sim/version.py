"""Version of the simulator's physics, stored in every shard it writes.

Bumped whenever the physics changes the simulated muons for a given seed, so that a shard
says which simulator made it and a dataset is never continued with a different one.
History (docs/simulator.md "Versions"):

1. the first simulator (shards without a ``simulator_version`` key are version 1);
2. geomagnetic deflection of charged particles and multiple scattering of muons in air,
   random shower azimuth;
3. curved-Earth shower axes through a spherical atmosphere, the spherical overburden in the
   medium, sites and media (``sim/earth.py``, ``sim/site.py``).
"""

SIMULATOR_VERSION = 3
#: what shards written before the key existed were made with
UNVERSIONED = 1
