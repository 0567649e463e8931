"""MoE-MRI core: mixture-of-experts denoising and super-resolution for brain MRI, without Slicer."""
__version__ = "0.1.0"
