//! `resync`: backfill a linked group again — all of it, one project, from a date, or only what failed.
//! The tasks are reset here; `serve`'s workers run them (they start as others finish, and on every
//! upkeep tick).

use gfj_store::Store;

use crate::Settings;

pub struct ResyncRequest {
    pub site: String,
    pub group: String,
    /// Full path of one project of the group.
    pub project: Option<String>,
    /// `YYYY-MM-DD` (UTC): history from that day.
    pub since: Option<String>,
    pub only_failed: bool,
}

/// Parses `YYYY-MM-DD` as midnight UTC, in epoch milliseconds.
pub fn parse_day(day: &str) -> anyhow::Result<i64> {
    let t = gfj_core::gitlab::GitLabTime::parse(&format!("{day}T00:00:00Z"))
        .filter(|_| day.len() == 10)
        .ok_or_else(|| anyhow::anyhow!("--since must be a date as YYYY-MM-DD, got {day:?}"))?;
    Ok(t.unix_ms())
}

/// What `resync` queued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Resynced {
    pub subscription_id: i64,
    pub queued_tasks: u64,
    /// The group's backfill had no tasks: it is planned again from the start.
    pub planning: bool,
}

pub async fn resync(
    settings: &Settings,
    store: &Store,
    req: &ResyncRequest,
    now_ms: i64,
) -> anyhow::Result<Resynced> {
    let since_ms = req.since.as_deref().map(parse_day).transpose()?;
    let install = super::link::site(store, &req.site).await?;
    let sub = store
        .find_subscription(&install.client_key, &req.group)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{} is not linked to {}", req.group, install.base_url))?;
    let tasks = store.backfill_tasks(Some(sub.id)).await?;
    if tasks.is_empty() {
        // The link's planning has not run (or was lost): plan everything again.
        gfj_sync::backfill::queue_backfill_plan(store, sub.id, now_ms).await?;
        return Ok(Resynced {
            subscription_id: sub.id,
            queued_tasks: 0,
            planning: true,
        });
    }
    let project_id = match &req.project {
        None => None,
        Some(path) => Some(
            tasks
                .iter()
                .find(|t| t.project_path == *path)
                .map(|t| t.project_id)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "project {path} is not part of {}'s backfill (projects that joined the group recently are added by the next hook check or reconciliation)",
                        req.group
                    )
                })?,
        ),
    };
    let queued = store
        .reset_backfill(sub.id, project_id, since_ms, req.only_failed, now_ms)
        .await?;
    store
        .start_backfill_tasks(settings.backfill_tasks as i64, now_ms)
        .await?;
    Ok(Resynced {
        subscription_id: sub.id,
        queued_tasks: queued,
        planning: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_as_midnight_utc_and_anything_else_is_refused() {
        assert_eq!(parse_day("1970-01-02").unwrap(), 86_400_000);
        for bad in [
            "2026-13-01",
            "yesterday",
            "2026-1-1",
            "2026-01-01T00:00:00Z",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
