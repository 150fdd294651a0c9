"""Inference layer (torch, no Qt): checkpoint loading, cell classification, karyotype-aware
assignment and Grad-CAM. Built on top of the trainer's checkpoint format."""
