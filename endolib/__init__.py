"""endolib: companion library to Rhee et al. (spinal endoscopy neural tissue segmentation)."""
__version__ = "0.1.0"
