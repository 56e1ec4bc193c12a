"""Pure image formats: the OCI model, image views, platforms, references, compression, layer tars, layouts, archives."""
