"""Run Airflow and dbt commands locally with the project's environment.

Resolving the warehouse (and starting the embedded one) happens once per command, here, so ``make`` targets,
the demo and the tests all get the same URLs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from crm_pipeline.errors import WarehouseConfigError
from crm_pipeline.local_airflow.cluster import (
    ClusterSettings,
    cluster_components,
    component_argv,
    forget,
    prepare_broker,
    read_settings,
)
from crm_pipeline.local_airflow.environment import airflow_environment
from crm_pipeline.local_airflow.port_owner import owns_port
from crm_pipeline.local_airflow.processes import COMPONENTS, ProcessSet
from crm_pipeline.paths import AIRFLOW_HOME, DBT_MANIFEST_VARIABLE, DBT_PROJECT_DIR, LOCAL_DIR
from crm_pipeline.warehouse.locate import airflow_metadata_url, resolve_warehouse_url
from crm_pipeline.warehouse.url import WarehouseUrl

VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LocalStack:
    warehouse: WarehouseUrl
    metadata: WarehouseUrl
    env: dict[str, str]


def local_stack(*, airflow_home: Path = AIRFLOW_HOME, api_port: int = 8080) -> LocalStack:
    """The warehouse, the metadata DB and the environment of local Airflow commands; while ``make cluster-up``'s
    cluster runs, with its CeleryExecutor settings, so ``crm airflow ...`` talks to the same executor."""
    warehouse = resolve_warehouse_url()
    metadata = airflow_metadata_url(warehouse)
    env = {
        **os.environ,
        **airflow_environment(warehouse, metadata, airflow_home=airflow_home, api_port=api_port),
    }
    if (cluster := read_settings(airflow_home / "run")) is not None:
        env.update(cluster.environment(metadata.sqlalchemy("psycopg2")))
    return LocalStack(warehouse, metadata, env)


def dbt_env(warehouse: WarehouseUrl, base: dict[str, str]) -> dict[str, str]:
    """Variables ``dbt_project/profiles.yml`` reads, for bare dbt runs outside Airflow."""
    return {
        **base,
        "DBT_TARGET_PATH": str(LOCAL_DIR / "dbt" / "target"),
        "CRM_WAREHOUSE_HOST": warehouse.host,
        "CRM_WAREHOUSE_PORT": str(warehouse.port),
        "CRM_WAREHOUSE_USER": warehouse.user,
        "CRM_WAREHOUSE_PASSWORD": warehouse.password or "",
        "CRM_WAREHOUSE_DB": warehouse.database,
    }


def run_airflow(stack: LocalStack, *args: str, check: bool = True, quiet: bool = False) -> int:
    proc = subprocess.run(
        [str(VENV_BIN / "airflow"), *args],
        env=stack.env,
        check=False,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
    )
    if check and proc.returncode != 0:
        raise SystemExit(f"airflow {' '.join(args)} failed with exit code {proc.returncode}")
    return proc.returncode


def run_dbt(stack: LocalStack, *args: str, check: bool = True) -> int:
    env = dbt_env(stack.warehouse, stack.env)
    argv = [
        str(VENV_BIN / "dbt"),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]
    proc = subprocess.run(argv, env=env, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"dbt {' '.join(args)} failed with exit code {proc.returncode}")
    return proc.returncode


def _newest_dbt_source() -> float:
    skip = {"target", "logs", "dbt_packages"}
    return max(
        (p.stat().st_mtime for p in DBT_PROJECT_DIR.rglob("*") if p.is_file() and skip.isdisjoint(p.parts)),
        default=0.0,
    )


def build_manifest(stack: LocalStack, *, force: bool = False) -> Path:
    """``dbt parse``: the manifest Cosmos renders from (no warehouse connection needed). Skipped while the
    manifest is newer than every file of the dbt project, which saves dbt's ~6 s start-up on each command."""
    manifest = Path(stack.env[DBT_MANIFEST_VARIABLE])
    if force or not manifest.exists() or manifest.stat().st_mtime < _newest_dbt_source():
        run_dbt(stack, "parse", "--quiet", "--target-path", str(manifest.parent))
    return manifest


def ensure_metadata_db(stack: LocalStack) -> None:
    """``airflow db migrate`` unless this Airflow version already migrated this metadata DB (saves ~8 s)."""
    import airflow

    home = Path(stack.env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / ".migrated"
    key = f"{airflow.__version__} {stack.metadata.host}:{stack.metadata.port}/{stack.metadata.database}"
    if stamp.exists() and stamp.read_text() == key:
        return
    run_airflow(stack, "db", "migrate", quiet=True)
    stamp.write_text(key)


def load_settings(stack: LocalStack) -> None:
    subprocess.run([sys.executable, "-m", "crm_pipeline.local_airflow.load_settings"], env=stack.env, check=True)


def apply_warehouse_grants(stack: LocalStack) -> None:
    """``crm warehouse grants`` on the local stack's warehouse: the structure the tasks use and the roles its
    ``crm_warehouse_<role>`` connections log in as. Without them no task can run, so a user that may not create
    roles stops the setup here, with what to run instead."""
    from crm_pipeline.source_mode import source_mode
    from crm_pipeline.warehouse.locate import connect
    from crm_pipeline.warehouse.roles import apply_grants_if_allowed

    with connect(stack.warehouse) as conn:
        if problem := apply_grants_if_allowed(conn, mode=source_mode(stack.env)):
            raise WarehouseConfigError(f"{problem}; the pipeline's tasks log in as these roles")


def component_set() -> ProcessSet:
    return ProcessSet(AIRFLOW_HOME / "run", AIRFLOW_HOME / "logs" / "components")


def start_components(*, cluster: bool = False) -> None:
    """``make up``: the api-server, scheduler, dag-processor and triggerer, each a real Airflow process, with the
    LocalExecutor. ``make cluster-up`` (``cluster=True``): the same with the CeleryExecutor, a Redis broker and
    two Celery workers (``cluster.py``). Starting again starts only what is missing (a killed worker, say)."""
    from crm_pipeline.warehouse.embedded import _free_port

    components = component_set()
    running = {t.name for t in components.running()}
    if running and cluster != (read_settings(components.run_dir) is not None):
        now, other = ("make up", "make cluster-up") if cluster else ("make cluster-up", "make up")
        raise SystemExit(f"{now}'s Airflow is running ({', '.join(sorted(running))}); stop it before {other}")
    names, settings = list(COMPONENTS), None
    if cluster:
        broker, settings = prepare_broker(components)
        names = cluster_components(settings)
        print(f"  broker: {broker.describe()}, queue {settings.queue}")
    else:
        forget(components.run_dir)  # a cluster that was not stopped cleanly must not lend make up its executor
    port_file = components.run_dir / "api-port"
    port = int(port_file.read_text()) if running and port_file.exists() else _free_port(8080)
    for attempt in range(1, PORT_ATTEMPTS + 1):
        _start_on(components, names, settings, running, port)
        if running or owns_port(components.tracked("api-server").pid, port):  # type: ignore[union-attr]
            break
        # Another checkout's api-server took the port between our check and our start, and answers for ours.
        print(f"  port {port} was taken by another process while the api-server started; starting again on another")
        components.stop(names)
        if attempt == PORT_ATTEMPTS:
            raise SystemExit(
                f"the api-server could not keep a port in {PORT_ATTEMPTS} attempts; see {components.log_dir}"
            )
        port = _free_port()
    passwords = AIRFLOW_HOME / "simple_auth_manager_passwords.json.generated"
    if passwords.exists():
        passwords.chmod(0o600)  # one an earlier version left readable to all
    print(f"\nAirflow UI: http://127.0.0.1:{port}")
    print(f"Log in as admin with the password in {passwords} (readable by you only)")
    print(f"Stop everything with `make {'cluster-down' if cluster else 'down'}`.")


PORT_ATTEMPTS = 3


def _start_on(
    components: ProcessSet, names: list[str], settings: ClusterSettings | None, running: set[str], port: int
) -> None:
    """Prepare the stack for ``port``, start what is not running, and wait until an api-server answers on it."""
    stack = local_stack(api_port=port)
    ensure_metadata_db(stack)
    apply_warehouse_grants(stack)
    load_settings(stack)
    build_manifest(stack)
    airflow = str(VENV_BIN / "airflow")
    for name in names:
        entry = components.start(name, component_argv(name, airflow, settings, port), stack.env)
        print(f"  {name}: pid {entry.pid}" + (" (already running)" if name in running else ""))
    (components.run_dir / "api-port").write_text(str(port))
    for _ in range(120):
        if _http_ok(f"http://127.0.0.1:{port}/api/v2/monitor/health"):
            return
        time.sleep(1)
    raise SystemExit(f"the api-server did not answer on port {port}; see {components.log_dir}/api-server.log")


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a loopback URL we built
            return bool(response.status == 200)
    except OSError:
        return False


def stop_components() -> list[str]:
    """Everything ``make up`` or ``make cluster-up`` started (a Redis of the project's own included), and
    nothing else: a Redis that was already running is left running."""
    components = component_set()
    stopped = components.stop_all()
    forget(components.run_dir)
    return stopped
