//! What jobs share in one process besides the store: settings of the backfill, caches of what every
//! backfill page of a project needs from GitLab, and the lock that serialises GitLab membership checks.
//! (Work that one replica at a time must own takes locks in the database: `gfj_store::locks`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gfj_core::gitlab::Project;
use gfj_gitlab_client::{GitLabClient, GitLabError};

/// How backfills run (`GFJ_BACKFILL_DAYS`, `GFJ_BACKFILL_TASKS`).
#[derive(Debug, Clone, Copy)]
pub struct BackfillSettings {
    /// History older than this is not read; `None`: all of it.
    pub window_ms: Option<i64>,
    /// Tasks (project × kind of history) running at once, over all subscriptions.
    pub max_running: i64,
}

impl Default for BackfillSettings {
    fn default() -> Self {
        use gfj_core::settings::default_number;
        Self {
            window_ms: Some(default_number("GFJ_BACKFILL_DAYS") * 86_400_000),
            max_running: default_number("GFJ_BACKFILL_TASKS"),
        }
    }
}

/// What the backfill's jobs share in one process: what every page of a project needs from GitLab besides
/// the page itself, read once per project and kept a few minutes (reading it per page would add a
/// request to each): the project as webhooks describe it, and the titles and descriptions of its open
/// merge requests by source branch (branches carry their keys, as in GitLab).
#[derive(Default)]
pub struct BackfillShared {
    entries: Mutex<HashMap<i64, (i64, Project)>>,
    open_mr_texts: Mutex<HashMap<i64, (i64, Arc<OpenMergeRequestTexts>)>>,
}

pub(crate) type OpenMergeRequestTexts = HashMap<String, Vec<String>>;

const PROJECT_CACHE_MS: i64 = 5 * 60 * 1000;
const PROJECT_CACHE_MAX: usize = 4096;

impl BackfillShared {
    pub(crate) async fn get(
        &self,
        gitlab: &GitLabClient,
        project_id: i64,
        now_ms: i64,
    ) -> Result<Option<Project>, GitLabError> {
        if let Some((at, p)) = self.entries.lock().unwrap().get(&project_id)
            && now_ms - at < PROJECT_CACHE_MS
        {
            return Ok(Some(p.clone()));
        }
        let Some(p) = gitlab.project(project_id).await? else {
            return Ok(None);
        };
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= PROJECT_CACHE_MAX {
            entries.clear();
        }
        entries.insert(project_id, (now_ms, p.clone()));
        Ok(Some(p))
    }

    pub(crate) async fn open_mr_texts(
        &self,
        gitlab: &GitLabClient,
        project_id: i64,
        now_ms: i64,
    ) -> Result<Arc<OpenMergeRequestTexts>, GitLabError> {
        if let Some((at, texts)) = self.open_mr_texts.lock().unwrap().get(&project_id)
            && now_ms - at < PROJECT_CACHE_MS
        {
            return Ok(texts.clone());
        }
        let texts = Arc::new(
            gitlab
                .open_merge_request_texts_by_branch(project_id)
                .await?,
        );
        let mut cached = self.open_mr_texts.lock().unwrap();
        if cached.len() >= PROJECT_CACHE_MAX {
            cached.clear();
        }
        cached.insert(project_id, (now_ms, texts.clone()));
        Ok(texts)
    }
}

/// Serialises GitLab membership checks in this process. They happen once per new project, so they are
/// rare; serialised, a burst of deliveries for one project costs one read, and a flood of made-up
/// project ids cannot fan out into concurrent GitLab reads.
#[derive(Clone, Default)]
pub struct CoverageChecks(std::sync::Arc<tokio::sync::Mutex<()>>);

impl CoverageChecks {
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }
}
