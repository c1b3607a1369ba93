"""Training stages of the bundled VAR-CLIP demo (Zhang et al., 2024, arXiv 2408.01181): CLIP,
multi-scale VQVAE and next-scale transformer (Tian et al., 2024), each resumable and seeded."""
