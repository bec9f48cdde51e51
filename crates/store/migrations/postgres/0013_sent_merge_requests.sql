-- Merge requests sent to a subscription's Jira site. GitLab sends no webhook when a merge request is
-- deleted; reconciliation compares this list with GitLab's to find the deleted ones and remove them.
CREATE TABLE sent_merge_requests (
    subscription_id BIGINT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    project_id      BIGINT NOT NULL,
    merge_request_id BIGINT NOT NULL,
    PRIMARY KEY (subscription_id, project_id, merge_request_id)
);
