"""Notices of new patches that apply to the estate: which machines each catalog patch applies
to, the patches new since the previous notification run, an append-only hash-chained ledger of
what was notified, and the POST to the notification webhook (`pipelines/notify.py`).

A stage, not a source: it reads the patch catalog and the inventory and writes the ledger and a
mart, so it sits with the other stages; the webhook it calls is a resource like any service.
"""

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from assets.common import DUCKDB_POOL, key
from pipelines import unchanged
from pipelines.ledger import GENESIS, chain_hash, comment_ledger
from pipelines.notify import NotificationWebhook, redact_url
from pipelines.resources import RunSettings, WarehouseResource
from pipelines.sources.bulletins import table_specs
from pipelines.warehouse import (
    build_table,
    comment_table,
    read_sql,
    resolve_as_of,
    sql_literal,
    table_exists,
    table_metadata,
    transaction,
)

NOTIFICATIONS_DDL = """
CREATE TABLE IF NOT EXISTS ledger.notifications_sent (
    seq BIGINT NOT NULL, notification_id VARCHAR NOT NULL, patch_key VARCHAR NOT NULL,
    kb VARCHAR, title VARCHAR, sources VARCHAR[], severity VARCHAR, max_cvss DOUBLE,
    exploited BOOLEAN, in_kev BOOLEAN, kev_due_date DATE, max_epss DOUBLE, cves VARCHAR[],
    products VARCHAR[], affected_machines BIGINT, released_at TIMESTAMPTZ,
    as_of DATE NOT NULL, notified_at TIMESTAMPTZ NOT NULL, run_id VARCHAR NOT NULL,
    delivery VARCHAR NOT NULL, content VARCHAR NOT NULL, row_sha256 VARCHAR NOT NULL,
    prev_sha256 VARCHAR NOT NULL, chain_sha256 VARCHAR NOT NULL
)
"""
_NOTIFICATIONS_COMMENT = (
    "Append-only record of the notices of new patches (what was notified when): one row per "
    "notice, never updated or deleted: a patch is notified once when new and once more if one "
    "of its CVEs enters KEV afterwards (content.reason new or entered_kev). content is the notice as "
    "canonical JSON (keys sorted), row_sha256 = sha256(content), chain_sha256 = "
    "sha256(prev_sha256 || row_sha256) chains the rows in seq order (64 zeros before the first). "
    "delivery: webhook (POSTed to PATCHLEDGER_NOTIFY_WEBHOOK) or warehouse (recorded only)."
)
_APPLICABILITY_COLUMNS = (
    "patch_key VARCHAR, kb VARCHAR, vm_id VARCHAR, source VARCHAR, matched_on VARCHAR, "
    "matched_product VARCHAR"
)
_NOTICE_FIELDS = (
    "patch_key", "kb", "title", "sources", "severity", "max_cvss", "exploited", "in_kev",
    "kev_due_date", "max_epss", "cves", "products", "affected_machines", "released_at",
    "remediation_url", "reason",
)


def _notice_payload(run_id: str, as_of: date, notices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "event": "patchledger.new_patches",
        "run_id": run_id,
        "as_of": as_of.isoformat(),
        "count": len(notices),
        "notifications": notices,
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


_NOTIFICATION_TABLES = (
    "staging.patch_applicability",
    "staging.notification_candidates",
    "ledger.notifications_sent",
    "marts.patch_notifications",
)
_NOTIFICATION_DESCRIPTIONS = {
    "staging.patch_applicability": "Which machines each catalog patch applies to: MSRC product "
    "names found in marts.vm_inventory os_name; OSV packages observed on the machine "
    "(marts.vm_patch_state) on the advisory's distribution and release.",
    "staging.notification_candidates": "The patches this run notifies: applicable, released in the "
    "lookback window (PATCHLEDGER_NOTIFY_LOOKBACK_DAYS, default 35) and never notified before, or "
    "notified before one of their CVEs entered KEV and in KEV now.",
    "ledger.notifications_sent": _NOTIFICATIONS_COMMENT,
    "marts.patch_notifications": "Notices of new patches that apply to the estate: every patch "
    "notified (severity, exploited, KEV, affected machines then and now), when and how.",
}


@dg.multi_asset(
    specs=table_specs(
        {table: _NOTIFICATION_DESCRIPTIONS[table] for table in _NOTIFICATION_TABLES}, {"duckdb", "sql"},
        deps=("marts.patch_catalog", "staging.msrc_fixes", "staging.osv_fixes", "marts.vm_inventory",
              "marts.vm_patch_state", "staging.patch_observations"),
    ),
    pool=DUCKDB_POOL,
)
def patch_notifications(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings,
    notification_webhook: NotificationWebhook,
):
    """Notify the patches new since the previous notification run that apply to the estate:
    append them to ledger.notifications_sent and, when PATCHLEDGER_NOTIFY_WEBHOOK is set, POST
    them as JSON first (a webhook failure fails the step and records nothing, so the next run
    notifies them again: delivery is at least once)."""
    webhook = notification_webhook.target()
    lookback = notification_webhook.lookback_days
    with warehouse.get_connection() as conn, transaction(conn):
        conn.execute(NOTIFICATIONS_DDL)
        literal = sql_literal(_NOTIFICATIONS_COMMENT)
        conn.execute(f"COMMENT ON TABLE ledger.notifications_sent IS {literal}")
        comment_ledger(conn)
        as_of = resolve_as_of(conn, run_settings.as_of_date())

        missing = [
            t for t in ("marts.vm_inventory", "marts.vm_patch_state") if not table_exists(conn, t)
        ]
        applicability = None
        if missing:
            context.log.warning(f"{missing} not built yet: no patch applies to the estate, nothing notified.")
            conn.execute(f"CREATE OR REPLACE TABLE staging.patch_applicability ({_APPLICABILITY_COLUMNS})")
            comment_table(conn, "staging.patch_applicability", "bulletin_patch_applicability")
            unchanged.forget(conn, ["staging.patch_applicability"])
        else:
            applicability = _applicability_build(conn, context)
            if not applicability.unchanged:
                build_table(conn, "staging.patch_applicability", "bulletin_patch_applicability")
        build_table(
            conn,
            "staging.notification_candidates",
            "bulletin_notification_candidates",
            params={"as_of": as_of, "lookback_days": lookback},
        )
        cursor = conn.execute(f"SELECT {', '.join(_NOTICE_FIELDS)} FROM staging.notification_candidates")
        names = [d[0] for d in cursor.description]
        candidates = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        head = conn.execute(
            "SELECT seq, chain_sha256 FROM ledger.notifications_sent ORDER BY seq DESC LIMIT 1"
        ).fetchall()
        seq, prev = (head[0][0], head[0][1]) if head else (0, GENESIS)
        notified_at = datetime.now(UTC)
        delivery = "webhook" if webhook else "warehouse"
        notices, ledger_rows = [], []
        for candidate in candidates:
            # A second notice of a patch (it entered KEV) has an id of its own.
            ident = candidate["patch_key"] + ("" if candidate["reason"] == "new" else f"|{candidate['reason']}")
            notice = {
                "notification_id": hashlib.sha256(ident.encode()).hexdigest()[:16],
                **{k: _json_value(v) for k, v in candidate.items()},
            }
            content = json.dumps(notice, sort_keys=True, default=str)
            row_sha = hashlib.sha256(content.encode()).hexdigest()
            chain = chain_hash(prev, row_sha)
            seq += 1
            ledger_rows.append(
                {
                    "seq": seq,
                    "notification_id": notice["notification_id"],
                    # The ledger's columns; remediation_url and reason are in `content`.
                    **{k: candidate[k] for k in _NOTICE_FIELDS if k not in ("remediation_url", "reason")},
                    "as_of": as_of,
                    "notified_at": notified_at,
                    "run_id": context.run.run_id,
                    "delivery": delivery,
                    "content": content,
                    "row_sha256": row_sha,
                    "prev_sha256": prev,
                    "chain_sha256": chain,
                }
            )
            notices.append(notice)
            prev = chain

        if notices and webhook:
            status = notification_webhook.post(_notice_payload(context.run.run_id, as_of, notices))
            context.log.info(
                f"Notification webhook {redact_url(webhook)} accepted {len(notices)} notices (HTTP {status})."
            )
        if ledger_rows:
            conn.register("_incoming", pa.Table.from_pylist(ledger_rows))
            try:
                conn.execute("INSERT INTO ledger.notifications_sent BY NAME SELECT * FROM _incoming")
            finally:
                conn.unregister("_incoming")
        build_table(
            conn,
            "marts.patch_notifications",
            "bulletin_patch_notifications",
            params={"run_id": context.run.run_id},
        )
        context.log.info(
            f"Notifications as of {as_of}: {len(notices)} new "
            f"({[n['patch_key'] for n in notices[:20]]}), delivery {delivery}."
        )
        metadata = {
            "staging.patch_applicability": table_metadata(conn, "staging.patch_applicability"),
            "staging.notification_candidates": table_metadata(conn, "staging.notification_candidates"),
            "ledger.notifications_sent": table_metadata(conn, "ledger.notifications_sent", order_by="seq DESC"),
            "marts.patch_notifications": table_metadata(conn, "marts.patch_notifications", order_by="seq DESC"),
        }
    if applicability is not None:
        metadata["staging.patch_applicability"].update(applicability.metadata())
    metadata["marts.patch_notifications"]["new_notifications"] = dg.MetadataValue.int(len(notices))
    metadata["marts.patch_notifications"]["delivery"] = dg.MetadataValue.text(delivery)
    for table in _NOTIFICATION_TABLES:
        yield dg.MaterializeResult(asset_key=key(table), metadata=metadata[table])


def _applicability_build(conn, context: dg.AssetExecutionContext) -> unchanged.Build:
    """The build of staging.patch_applicability: its inputs are the fix tables, its SQL and only
    what it reads of the inventory and the state (the machines' OS, the packages seen on them),
    whose other columns change every day; unchanged, it is not rebuilt."""
    basis = conn.execute(read_sql("bulletin_patch_applicability_basis")).fetchall()[0][0]
    build = unchanged.check(conn, ["staging.patch_applicability"], unchanged.fingerprint(
        conn, ["staging.msrc_fixes", "staging.osv_fixes"],
        ["bulletin_patch_applicability", "bulletin_patch_applicability_basis"], basis))
    if build.unchanged:
        context.log.info(f"staging.patch_applicability: inputs unchanged since run {build.since_run}, not rebuilt")
    else:
        unchanged.record(conn, build, context.run.run_id)
    return build
