"""Media: the object store behind ``POST/GET /v1/media`` and the thumbnails of images."""
