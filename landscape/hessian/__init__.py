"""Hessian spectra of an objective: HVP operator, Lanczos, power iteration, trace, density."""

from landscape.hessian.eigen import top_eigenpairs
from landscape.hessian.lanczos import lanczos
from landscape.hessian.operator import HessianOperator
from landscape.hessian.results import EigenResult

__all__ = ["EigenResult", "HessianOperator", "lanczos", "top_eigenpairs"]
