"""Deployment configuration and the command that applies notification automations (`python -m deployments.automations`)."""
