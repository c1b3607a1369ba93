"""The versioned model registry: immutable model versions, weight hashes, aliases."""
