"""The OCI image model and its media: layers, layouts, archives, registries."""
