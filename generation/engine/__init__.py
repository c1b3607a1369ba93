"""VAR-CLIP engine: next-scale prediction (Tian et al., 2024) conditioned on CLIP text.

Pure PyTorch + open_clip + safetensors + numpy; nothing here imports the web platform.
"""

from generation.engine import huge_pages

# Before any engine module imports torch: torch reads this at the process's first CPU tensor.
huge_pages.request()
