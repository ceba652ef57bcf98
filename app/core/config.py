"""Service settings, read from the environment (prefix KARTA_) or a .env file.

Defaults give a working single-machine install: SQLite under ./var, nothing else needed.
"""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_SQLITE_PATH = Path("var") / "karta.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KARTA_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_SQLITE_PATH}",
        description="SQLAlchemy URL; postgresql+psycopg://user@host/db for PostgreSQL.",
    )
    # How long a verified token is trusted without asking the database again. Revoking a token waits
    # this long after its commit before answering, so that once it answers no worker accepts the token.
    token_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    # The class registry is cached per worker; another worker's change to a class
    # schema is seen within this many seconds (an unknown class forces a reload at once).
    registry_cache_seconds: float = 5.0
    # Threads serving blocking endpoints per worker, and database connections held per worker.
    # One connection per thread, so no request waits for a connection or opens one of its own.
    threads: int = 16
    # Single-CI reads (GET /api/v1/cis/{id}) a worker runs at once; the others wait their turn in order.
    # A worker is one Python process: more reads at once than it takes to cover one read's database
    # round trip only make them take turns at the interpreter, less fairly (at 16 at once, the 99th
    # percentile was 1.4-11x as long: BENCHMARKS.md, "The single-CI read ahead of FastAPI's routing").
    # A waiting read goes without a turn once no read has given one back for `ci_read_turn_seconds`: reads
    # held up by the database (a frozen replica, a far or loaded server) hold up the others no longer
    # than that. A queue that moves keeps its order however long (app/api/cis.py, ReadTurns).
    ci_read_concurrency: int = Field(default=3, ge=1, le=1000)
    ci_read_turn_seconds: float = Field(default=0.1, ge=0, le=60)
    default_page_size: int = 100
    # Bounds on what a client sends: the body's size (413 beyond), the time to send the body (408
    # beyond) and the headers (the connection is closed beyond), so slow clients cannot hold workers.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_ingest_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    body_timeout_seconds: float = Field(default=60.0, gt=0)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    # The largest a CI's attributes may be, as JSON (a CI is a record, not a file store).
    max_attributes_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Build the in-memory impact graph in the background as soon as the worker starts (otherwise the
    # first impact question builds it).
    load_graph_at_startup: bool = True
    # Discovery: a CI a source no longer reports becomes stale after this many complete runs of that
    # source over the same scope without it, or this many days since that source last saw it.
    stale_after_runs: int = Field(default=3, ge=1)
    stale_after_days: float = Field(default=14.0, gt=0)
    # Pictures (format=svg): larger answers are refused (422, use max_depth or format=dot/json), and
    # Graphviz's dot is stopped after the timeout. `graphviz_dot` names the program.
    svg_max_nodes: int = Field(default=1000, ge=1)
    svg_max_edges: int = Field(default=2000, ge=0)
    svg_timeout_seconds: float = Field(default=20.0, gt=0)
    graphviz_dot: str = "dot"
    # A worker more than this many change records behind rebuilds its impact graph instead of applying
    # them one by one (a rebuild is faster past it; see app/services/live_graph.py).
    graph_catch_up_max: int = Field(default=200_000, ge=0)
    # A worker whose impact graph holds at least this many CIs also keeps it as integer-indexed arrays
    # (graph/compact.py, built in a thread of its own after the graph is loaded) and answers impact
    # questions with the compiled loop over them: the same answers, several times faster on a large
    # graph, for ~100 MiB more per worker at 1,000,000 CIs. `graph_compact` false: never.
    graph_compact: bool = True
    graph_compact_min_cis: int = Field(default=50_000, ge=0)
    # Impact graph snapshots (app/services/live_graph.py): a directory of this host's own (e.g.
    # /var/lib/karta/graph, under the unit's StateDirectory; created 0700 if missing, refused if others
    # may write it) where one worker writes its graph when the file is older than
    # `graph_snapshot_seconds`; a worker that starts loads it and applies the change feed from there
    # (~5 s at 1,000,000 CIs, against ~25 s from the database). Unset: every worker loads from the database.
    graph_snapshot_dir: Path | None = None
    graph_snapshot_seconds: float = Field(default=300.0, ge=1, le=86400)
    # The web UI (/ui): a session is an encrypted, signed cookie holding the token it was opened with,
    # valid this many hours (and never past the token's own expiry). Its key is KARTA_SESSION_SECRET
    # when set (the same on every host), else one Karta generates once and keeps in the database.
    session_secret: str | None = Field(default=None, min_length=16, repr=False)
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    # Pictures on pages: above this many CIs the picture groups CIs by class and state (with counts)
    # instead of drawing each one. `ui_pictures`: "auto" draws SVG on the server when Graphviz's dot
    # is there and otherwise lets the browser draw the same DOT (vendored Viz.js); "browser" always
    # leaves it to the browser.
    ui_picture_max_nodes: int = Field(default=120, ge=2, le=1000)
    ui_pictures: str = Field(default="auto", pattern="^(auto|browser)$")
    # Ansible inventory answers (GET /api/v1/integrations/ansible/inventory) kept per worker, up to
    # this many bytes in all, and served again while the change feed has not moved (any write moves
    # it). 100,000 hosts are ~50 MB; 0 keeps none. The hosts' rows and rendered variables an answer
    # after a write is made from are kept too, each up to as many bytes (app.api.ansible.InventoryCaches).
    inventory_cache_bytes: int = Field(default=128 * 1024 * 1024, ge=0)
    # Python's cyclic garbage collector thresholds for the worker (gc.set_threshold). At Python's
    # defaults (700, 10, 10) an ingest batch, which allocates millions of short-lived objects, triggers
    # thousands of collections, and the older ones walk every live object, the impact graph included:
    # 25-40% of a first-load batch was spent there (measured, see BENCHMARKS.md).
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 100)
    # Webhooks (app/services/webhook_delivery.py). `webhooks_deliver`: this worker delivers (false on
    # API-only hosts; another host's workers deliver). A subscription is disabled after
    # `webhook_max_failures` failed attempts in a row; between failures it waits base * 2^(n-1) seconds,
    # at most `webhook_retry_max_seconds`, each wait a random 50-100% of that. Every HTTP call is bounded
    # by `webhook_timeout_seconds`; a delivery holds at most `webhook_batch_records` change records and
    # about `webhook_batch_bytes` of JSON; the feed is polled every `webhook_poll_seconds`; at most
    # `webhook_concurrency` deliveries run at once per worker; the log keeps `webhook_log_keep` attempts
    # per subscription. `webhook_key` encrypts the subscriptions' secrets (the same on every host);
    # unset, Karta generates a key once and keeps it in the database.
    webhooks_deliver: bool = True
    # Service maps (app/services/service_map_keeper.py): this worker runs a keeper thread (false on
    # API-only hosts; some worker of the deployment must keep them, or maps go stale). Keepers of several
    # workers take turns through an advisory lock on PostgreSQL; one per deployment is enough.
    service_maps_keep: bool = True
    webhook_max_failures: int = Field(default=10, ge=1, le=1000)
    webhook_retry_base_seconds: float = Field(default=2.0, gt=0, le=3600)
    webhook_retry_max_seconds: float = Field(default=600.0, gt=0, le=86400)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_batch_records: int = Field(default=100, ge=1, le=1000)
    webhook_batch_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    webhook_poll_seconds: float = Field(default=0.5, ge=0.05, le=5)
    webhook_concurrency: int = Field(default=4, ge=1, le=64)
    webhook_log_keep: int = Field(default=200, ge=1, le=100_000)
    webhook_key: str | None = Field(default=None, min_length=16, repr=False)
    # Alerts become incidents (app/services/alert_binding.py): the ordered rules that bind an alert to a
    # CI, as JSON, e.g. KARTA_ALERT_BINDINGS='[{"label": "cmdb_ci", "match": "ci_id"}, {"label": "instance",
    # "match": "host"}]'. `match` is ci_id (the label holds a CI id), host (an address, fqdn or hostname,
    # port stripped, looked up among host identifiers and names) or service (the name of a CI of class
    # service). The first rule that binds wins. None: the defaults (cmdb_ci, instance, service, job).
    alert_bindings: list[dict[str, str]] | None = None
    # Alertmanager's webhook carries a whole group; a few thousand alerts with their labels can pass 4 MB.
    max_alert_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # An incident stores at most this many impacted CIs (failed ones first, then nearest); counts,
    # services and risk always cover the whole blast radius.
    incident_impacted_max: int = Field(default=500, ge=0, le=100_000)
    # ... and at most this many affected services, the most critical first (`services_count` says how many
    # there are): a datacenter's router takes down thousands, which nobody reads in a ticket or a page and
    # which made the stored incident megabytes. The risk and the owners to notify cover them all.
    incident_services_max: int = Field(default=500, ge=0, le=100_000)
    # Root-cause candidates of an incident are ranked by the CIs each would take down besides the
    # symptoms, counted up to this many (graph.causes extra_cap): candidates past it rank after the
    # others of their level, by id, flagged `extra_down_exact: false`. At 1,000,000 CIs, 20 unrelated
    # failures took 1.15 s p50 uncapped, 215 ms at 20,000, 63 ms at 5,000, 24 ms at 1,000 (BENCHMARKS.md,
    # incidents). A candidate that takes more than 1,000 other CIs down is a weak explanation anyway.
    incident_root_cause_extra_cap: int = Field(default=1_000, ge=0, le=10_000_000)
    # An open Alertmanager incident with no notification of its group for this long has stopped firing
    # (all silenced, inhibited, or Alertmanager gone): its firing alerts expire (app.services.incidents).
    # Alertmanager repeats a firing group every repeat_interval (4h by default): set this to the route's
    # repeat_interval + group_interval + a margin. Expiry is swept every `incident_sweep_seconds`, at
    # most `incident_sweep_max` incidents a sweep (app.services.incident_expiry).
    alert_expiry_seconds: float = Field(default=4 * 3600 + 15 * 60, ge=1, le=90 * 86400)
    incident_sweep_seconds: float = Field(default=30.0, ge=0.05, le=3600)
    incident_sweep_max: int = Field(default=100, ge=1, le=10_000)

    # Read replicas (app/core/replicas.py): PostgreSQL hot standbys of database_url, comma-separated
    # SQLAlchemy URLs. Reads that may lag go to them; writes, reads inside a write and token checks go to
    # the primary. A read that sends X-Karta-Min-Seq (or the web UI's cookie after a write) waits at most
    # `replica_wait_seconds` for a replica to have that change, else the primary answers it. Each worker
    # checks its replicas every `replica_check_seconds`; one that does not answer within
    # `replica_timeout_seconds`, or is more than `replica_max_lag_seconds` behind, leaves the rotation and
    # is checked again after 1, 2, 4 ... s (at most `replica_retry_max_seconds`).
    database_replica_urls: str = ""
    replica_wait_seconds: float = Field(default=0.5, ge=0, le=10)
    replica_check_seconds: float = Field(default=1.0, ge=0.05, le=60)
    replica_max_lag_seconds: float = Field(default=30.0, gt=0, le=86400)
    replica_timeout_seconds: int = Field(default=2, ge=1, le=60)
    replica_retry_max_seconds: float = Field(default=30.0, ge=1, le=3600)

    @property
    def replica_urls(self) -> list[str]:
        return [url.strip() for url in self.database_replica_urls.split(",") if url.strip()]

    @model_validator(mode="after")
    def _replicas_are_postgresql(self) -> "Settings":
        # Refused when Karta starts: a replica of SQLite does not exist, and a typo must not pass silently.
        urls = self.replica_urls
        if urls and make_url(self.database_url).get_backend_name() != "postgresql":
            raise ValueError("database_replica_urls needs a PostgreSQL database_url (replicas are its hot standbys)")
        for n, url in enumerate(urls):
            try:
                backend = make_url(url).get_backend_name()
            except Exception as exc:  # any unparsable URL is the same mistake
                raise ValueError(f"database_replica_urls[{n}] is not a database URL") from exc
            if backend != "postgresql":
                raise ValueError(f"database_replica_urls[{n}] must be a postgresql URL, not {backend}")
        return self

    @field_validator("alert_bindings")
    @classmethod
    def _alert_bindings(cls, rules: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
        # Refused when Karta starts, not at the first alert (whose webhook would then fail).
        for n, rule in enumerate(rules or []):
            if set(rule) != {"label", "match"} or not rule["label"] or rule["match"] not in ("ci_id", "host", "service"):
                raise ValueError(f"alert_bindings[{n}] must be {{\"label\": <name>, \"match\": ci_id|host|service}}")
        return rules

    # Prometheus (/metrics): the estate's counts (CIs by class, discovery runs) are read from the
    # database at most once per this many seconds per worker, however often Prometheus scrapes.
    metrics_cache_seconds: float = Field(default=10.0, ge=0, le=3600)
    # An address ("127.0.0.1:9464", "[::1]:9464") where `karta serve` also serves /metrics WITHOUT a
    # token (none: only GET /metrics on the API port, with a token of scope read). Bind it to an
    # address only Prometheus reaches.
    metrics_listen: str | None = Field(default=None, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
    # What a client of that open listener may hold (app/core/metrics_listener.py): connections at once,
    # and the seconds to send a whole request from connecting.
    metrics_max_connections: int = Field(default=8, ge=1, le=1000)
    metrics_read_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # The largest spreadsheet or bundle POST /api/v1/import takes (413 beyond). An import is one
    # transaction whatever its size (all-or-nothing): 100,000 CSV rows of a dozen columns take ~15 MB.
    max_import_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)


@lru_cache
def get_settings() -> Settings:
    return Settings()
