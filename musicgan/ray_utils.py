"""Ray start-up shared by every command: join a cluster if there is one, else start a quiet local one."""

from __future__ import annotations

import logging
import os


def ensure_ray(num_cpus: int | None = None) -> None:
    """``ray.init`` once per process.

    Inside a Ray job (``RAY_ADDRESS`` set by ``ray job submit``) this joins that cluster; with
    ``MUSICGAN_RAY_ADDRESS`` it joins the named one; otherwise it starts a local instance.
    Token authentication is left exactly as the cluster configured it.
    """
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("MUSICGAN_RAY_ADDRESS") or os.environ.get("RAY_ADDRESS")
    kwargs = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        # Serve's HTTP proxy routes on its own event loop instead of a second one: about 2 ms less
        # per request at p50 on two cores (benchmarks/serve_load.py). Workers inherit it from here.
        os.environ.setdefault("RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", "0")
        # The dashboard process also serves the State API. Ray Train's PlacementGroupCleaner needs
        # it to free a killed run's CPUs (a trial that ASHA stops is killed); without it they leak
        # and later trials wait forever. It listens on loopback only.
        ray.init(num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", **kwargs)
    try:  # Ray Data's per-operator progress bars are useful; its info logs are noise
        from ray.data import DataContext

        ctx = DataContext.get_current()
        ctx.enable_progress_bars = True
        ctx.print_on_execution_start = False
    except Exception:  # older/newer Ray without these knobs: keep its defaults
        pass
