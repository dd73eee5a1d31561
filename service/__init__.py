"""The brainsearch REST service and dashboard (FastAPI): ``create_app`` (app.py), the API routers (routers/), the
dashboard (dashboard.py, charts.py, templates/) and the queue worker (worker.py)."""
