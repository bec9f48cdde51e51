//! End-to-end tests: the real service, its real database (SQLite and PostgreSQL), and the GitLab and
//! Jira simulators, all on loopback. One test binary, modules by area.

mod admin;
mod backfill;
mod browser;
mod connect;
mod demo;
mod doctor;
mod edge;
mod events;
mod gating;
mod gitlab;
mod helpers;
mod jira_client;
mod jira_config;
mod jsm;
mod link;
mod metrics;
mod oauth;
mod payloads;
mod process;
mod push;
mod reconcile;
mod replicas;
mod sign_in;
mod tenants;
mod uninstall;
mod webdriver;
