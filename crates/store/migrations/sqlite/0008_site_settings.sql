-- Per-site settings an operator sets: the Jira project keys whose issue keys are sent (NULL: all), which
-- drops false positives such as UTF-8 or SHA-256.
CREATE TABLE site_settings (
    client_key   TEXT PRIMARY KEY,
    project_keys TEXT
);
