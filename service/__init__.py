"""The brainsearch REST service and dashboard (FastAPI). Not built yet: see the service issue."""
