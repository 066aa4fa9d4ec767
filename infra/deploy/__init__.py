"""Deployment: Dagster instance files, Kubernetes executor/launcher config, Helm values and the image."""
