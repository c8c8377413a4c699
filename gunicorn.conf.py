"""gunicorn's settings for Voxanne, read from the working directory by `gunicorn
voxanne.wsgi:application` (production), `make run` and the tests' and benchmarks' servers.

Threaded workers: a thread waiting on a slow client, Postgres or a provider holds no process,
and password hashing (PBKDF2 in OpenSSL) releases the GIL and runs at low priority, so a burst
of sign-ups does not queue every other request behind it (bench/load.py measures that).
Production still sits behind a buffering reverse proxy (nginx, a load balancer) that reads
each request whole before passing it on; a slow client can hold one thread here, never the
service.

Environment: WEB_CONCURRENCY (processes, default: one per CPU, at least 2), GUNICORN_THREADS
(threads per process, default 32). Command-line flags override everything here.
"""

import os

_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, _cpus or 1))
# More threads than the connections a burst of sign-ups holds, so a read always finds one:
# each sign-up keeps its thread while its password hash runs, at low priority
# (voxanne/hashers.py). bench/load.py, 200 clinics signing up at once over 32 connections on
# the 2-core machine, same day: status p95 during the sign-ups 193x its idle p95 (1,686 ms)
# with 16 threads and Django's hasher, 2.8x (28.8 ms) with 32 threads and the low-priority
# one. Each thread that serves a request keeps a database connection (CONN_MAX_AGE):
# workers x threads must stay within Postgres' max_connections.
threads = int(os.environ.get("GUNICORN_THREADS") or 32)

# A worker that stops reporting for `timeout` seconds is restarted; a request may take
# longer (provisioning waits on Twilio and Vapi, PROVIDER_TIMEOUT_SECONDS each step).
timeout = 60
graceful_timeout = 30
# Idle keep-alive connections wait in the poller, not in a thread. Longer than the proxy's own
# idle timeout (nginx upstream keepalive_timeout and cloud load balancers: 60 s), so the proxy
# closes first and never sends a request on a connection gunicorn is closing.
keepalive = 75
backlog = 2048

# What gunicorn reads before Django sees the request; beyond them it answers 414 or 431 itself.
# Bodies are limited by Django (DATA_UPLOAD_MAX_MEMORY_SIZE, a 413) and by the proxy.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# The application writes one JSON access line per request itself (voxanne.observability),
# with the credentials of signed links redacted, so gunicorn's own access log stays off.
accesslog = None
errorlog = "-"
