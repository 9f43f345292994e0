"""Figures drawn from result objects (matplotlib only here; nothing is computed, nothing is shown).

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so it works headless.
"""

from landscape.plot.compare import plot_comparison
from landscape.plot.spectrum import plot_density, plot_eigenvalues
from landscape.plot.surface import plot_surface_1d, plot_surface_2d, plot_surfaces_2d, shared_limits

__all__ = [
    "plot_comparison",
    "plot_density",
    "plot_eigenvalues",
    "plot_surface_1d",
    "plot_surface_2d",
    "plot_surfaces_2d",
    "shared_limits",
]
