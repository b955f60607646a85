"""Infrastructure: settings, errors, auth, metrics, image storage, uploads, overlays."""
