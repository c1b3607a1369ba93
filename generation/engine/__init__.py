"""VAR-CLIP engine: next-scale prediction (Tian et al., 2024) conditioned on CLIP text.

Pure PyTorch + open_clip + safetensors + numpy; nothing here imports the web platform.
"""
