"""Sparse mixture-of-experts denoising (Deng and Campbell, arXiv:2501.14198): a DnCNN backbone
whose final layer is fine-tuned per expert, chosen per patch (patch gate) or per intensity class
(segmentation gate).

`method` registers `smoe-patch` and `smoe-segment`; it is imported by the registry's loader only,
so that importing the network or the gate (as training does) registers nothing.
"""
