"""dropout-lab: dropout experiments on the Fashion-MNIST MLP.

Importing the package is cheap: torch and Hydra are imported by the modules that need them.
"""

__version__ = "0.1.0"
