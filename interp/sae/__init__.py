"""Sparse autoencoders (SAELens) on the residual stream: training, loading, features,
interventions and comparisons across models.

>>> from interp.sae import SAEConfig, train_sae, load_sae
"""

from interp.sae.config import ARCHITECTURES, SAEConfig, register_architecture
from interp.sae.store import LoadedSAE, SAEManifest, SAEMismatchError, load_sae
from interp.sae.train import train_sae

__all__ = [
    "ARCHITECTURES",
    "LoadedSAE",
    "SAEConfig",
    "SAEManifest",
    "SAEMismatchError",
    "load_sae",
    "register_architecture",
    "train_sae",
]
