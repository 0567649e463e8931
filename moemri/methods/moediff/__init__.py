"""MoEDiff-SR: a mixture-of-experts-guided diffusion model for slice-wise MRI super-resolution."""
