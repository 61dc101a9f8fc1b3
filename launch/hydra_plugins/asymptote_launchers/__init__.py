"""asymptote's Hydra launchers and sweeper, where Hydra looks for plugins (`hydra_plugins`).

Hydra only instantiates plugin classes defined under `hydra_plugins`, and a submitted SLURM
task unpickles its launcher by this module path. The behaviour lives in
`asymptote.launch.app.launchers`; these names only place it where Hydra accepts it.
"""

from asymptote.launch.app import launchers as _impl


class LocalSweepLauncher(_impl.LocalSweepLauncher):
    """See asymptote.launch.app.launchers.LocalSweepLauncher."""


class SlurmSweepLauncher(_impl.SlurmSweepLauncher):
    """See asymptote.launch.app.launchers.SlurmSweepLauncher."""


class AsymptoteSweeper(_impl.AsymptoteSweeper):
    """See asymptote.launch.app.launchers.AsymptoteSweeper."""
