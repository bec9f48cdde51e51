//! The pure core of gitlab-for-jira: everything that decides *what* to send, with no I/O.
//!
//! - [`issue_keys`]: GitLab's Jira issue-key rule.
//! - [`qsh`] and [`connect_jwt`]: Atlassian Connect request hashing and JWTs; [`connect_lifecycle`]: the
//!   body of Connect lifecycle callbacks.
//! - [`gitlab`]: typed GitLab webhook payloads (what arrives).
//! - [`jira`]: typed Jira Software Cloud request bodies (what leaves).
//! - [`mapping`]: GitLab objects → Jira entities, with the id rules of `docs/interface.md`.
//! - [`jobs`]: payloads of the durable queue.
//! - [`batching`]: packing entities into requests within Jira's limits, splitting on 413.
//! - [`standard_webhooks`]: the HMAC signature GitLab adds to deliveries of hooks with a signing token.
//! - [`backoff`]: the retry schedule the durable queue applies.
//! - [`digest`]: secrets are stored and compared as SHA-256 digests.
//! - [`url_pattern`]: the allow-lists of Jira sites and GitLab instances, by canonical origin.
//! - [`metric_names`]: the metric families of `/metrics`, and the bounded labels of request paths.
//! - [`server_time`]: waits and token lifetimes that servers send, parsed strictly and capped.
//!
//! Everything here is deterministic given its inputs (time is passed in), so it is table-tested.

pub mod backoff;
pub mod batching;
pub mod connect_jwt;
pub mod connect_lifecycle;
pub mod digest;
pub mod domain;
pub mod gitlab;
pub mod issue_keys;
pub mod jira;
pub mod jobs;
pub mod jsm;
pub mod mapping;
pub mod metric_names;
pub mod qsh;
pub mod server_time;
pub mod settings;
pub mod standard_webhooks;
pub mod url_pattern;
