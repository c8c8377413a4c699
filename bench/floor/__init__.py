"""The application as gunicorn serves it, plus one endpoint that exists only here: the floor
that bench/api.py measures the authenticated reads against."""
